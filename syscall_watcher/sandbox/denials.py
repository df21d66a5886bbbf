"""Seccomp denials of a run, from seccomp's own logging: a filter with the log flag makes the
kernel write an audit record (type 1326) for each denied call to the kernel log, even with no
audit daemon. A seccomp-denied call never reaches the sys_enter tracepoint, so the tracer
cannot see it there. Records carry the pid; those of the run's processes become DENIED lines
(tier seccomp). The kernel rate-limits these log lines (printk_ratelimit): a storm of
denials shows only some; the summary says so when the kernel reports suppressed lines."""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Callable

from syscall_watcher.kernel import syscalls

_SECCOMP = re.compile(rb"audit: type=1326 .*? uid=(\d+) .*? pid=(\d+) comm=\"([^\"]*)\".*? "
                      rb"arch=([0-9a-f]+) syscall=(\d+) .*?code=0x([0-9a-f]+)")
# SECCOMP_RET_* (the action part of the filter's return value, audit's code=) → the record's
# action; the low 16 bits of an ERRNO return are the errno.
_ACTIONS = {0x80000000: "killed", 0x00000000: "killed", 0x00030000: "trapped",
            0x00050000: "blocked", 0x7FC00000: "notified", 0x7FF00000: "traced",
            0x7FFC0000: "audit"}
_SUPPRESSED = re.compile(rb"(\d+) callbacks suppressed")


class SeccompDenials:
    """Reads /dev/kmsg from now on; ``take()`` gives (ktime, line) for the run's denials."""

    def __init__(self, policy: str, pids: Callable[[], set[int]], json_lines: bool = False,
                 color: bool = False, source: str = "policy",
                 errno_of: Callable[[str], int] | None = None) -> None:
        self.policy = policy
        # The audit record has the action, not the errno (the kernel logs the return value's
        # action part only): the filter's builder says which errno a denied call got.
        self.errno_of = errno_of or (lambda _name: errno.EPERM)
        self.source = source  # "policy" (run --policy) or "profile" (run --seccomp)
        self.pids = pids
        self.json = json_lines
        self.color = color
        self.seen = 0
        self.by_syscall: dict[str, int] = {}
        self.suppressed = 0
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self._fd, 0, os.SEEK_END)

    def _records(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(os.read(self._fd, 8192))
            except BlockingIOError:
                return out
            except OSError:  # EPIPE: records overwritten before we read them; go on
                continue

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        return self._lines(self._records())

    def _lines(self, recs: list[bytes]) -> list[tuple[int, bytes]]:
        lines = []
        pids = None
        for rec in recs:
            m = _SECCOMP.search(rec)
            if not m:
                if (s := _SUPPRESSED.search(rec)) and b"kauditd" in rec:
                    self.suppressed += int(s.group(1))
                continue
            uid, pid = int(m.group(1)), int(m.group(2))
            if pids is None:
                pids = self.pids()
            if pid not in pids:
                continue
            nr = int(m.group(5))
            name = _syscall_name(int(m.group(4), 16), nr)
            code = int(m.group(6), 16)
            action = _ACTIONS.get(code & 0xFFFF0000, "blocked")
            err = None
            if action == "blocked":
                e = self.errno_of(name)
                err = errno.errorcode.get(e, f"E{e}")
            self.seen += 1
            self.by_syscall[name] = self.by_syscall.get(name, 0) + 1
            lines.append((time.monotonic_ns(), self._line(
                pid, uid, m.group(3).decode(errors="replace"), name, nr, action, err)))
        return lines

    def take_all(self) -> list[tuple[int, bytes]]:
        """Everything logged so far: the kernel writes audit records from its kauditd thread,
        after the call; a marker denial of our own, logged after every record of the run,
        is the barrier (records go out in order)."""
        marker = _marker_denial()
        lines: list[tuple[int, bytes]] = []
        end = time.monotonic() + 2.0
        found = marker is None
        while True:
            recs = self._records()
            found = found or any(f" pid={marker} ".encode() in r for r in recs)
            lines += self._lines(recs)
            if found or time.monotonic() > end:
                return lines
            time.sleep(0.005)

    def _line(self, pid: int, uid: int, comm: str, name: str, nr: int, action: str,
              err: str | None) -> bytes:
        """The kernel's audit record names the process (pid: the tgid), its real uid and
        comm — not the thread, the parent or the cgroup, so the record has none of those."""
        if self.json:
            rec = {"type": "denied", "time_ns": time.time_ns(), "pid": pid, "uid": uid,
                   "comm": comm, "op": name, "syscall": name, "nr": nr, "tier": "seccomp",
                   "action": action, **({"errno": err} if err else {}),
                   self.source: self.policy}
            return (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        t = time.time()
        ts = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
        word = "\033[1;31mDENIED\033[0m" if self.color else "DENIED"
        return (f"{ts} {comm}[{pid}] {word} {name} ({self.source} {self.policy}, tier seccomp: "
                f"{err or action})\n").encode()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _syscall_name(audit_arch: int, nr: int) -> str:
    """The name of syscall ``nr`` of the audit record's architecture (a compat call from a
    32-bit program has another table); libseccomp's arch tokens are the AUDIT_ARCH_ values."""
    if audit_arch == AUDIT_ARCH_NATIVE:
        return syscalls.names().get(nr, f"nr{nr}")
    try:
        from syscall_watcher.sandbox.oci import seccomp_binding

        name = seccomp_binding().resolve_syscall(audit_arch, nr)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 — no binding, or a number it does not know
        return f"nr{nr} (arch {audit_arch:#x})"


AUDIT_ARCH_NATIVE = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine, 0)


def _marker_denial() -> int | None:
    """A child of ours makes one seccomp-denied, logged call (getppid); its pid, once it is
    reaped (None when no filter can be loaded)."""
    try:
        import pyseccomp as seccomp
    except ImportError:
        try:
            import seccomp  # type: ignore[no-redef]
        except ImportError:
            return None
    pid = os.fork()
    if pid == 0:
        try:
            f = seccomp.SyscallFilter(seccomp.ALLOW)
            f.add_rule(seccomp.ERRNO(1), "getppid")
            f.set_attr(seccomp.Attr.CTL_LOG, 1)
            f.load()
            os.getppid()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


class Merged:
    """Several (ktime, line) sources as one, for Streamer.pump(extra=...)."""

    def __init__(self, *sources: object) -> None:
        self.sources = [s for s in sources if s is not None]

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        return [x for s in self.sources for x in s.take()]  # type: ignore[attr-defined]

    def take_all(self) -> list[tuple[int, bytes]]:
        return [x for s in self.sources for x in s.take_all()]  # type: ignore[attr-defined]
