"""Landlock denials of a run (`swatch run --policy`), from the kernel's audit records.

Landlock ABI 7 (Linux 6.15) logs each denial through the audit subsystem: a LANDLOCK_ACCESS
record (type 1423: the domain, the rights that blocked — ``blockers=fs.make_reg`` — and the
path), with the SYSCALL record of the same event (1300: pid, comm, syscall, exit code) and an
end-of-event record (1320). The ruleset is restricted with RESTRICT_SELF_LOG_NEW_EXEC_ON
(sandbox/landlock.py), so denials after CMD's exec are logged too. swatch reads them from the
audit netlink multicast group (AUDIT_NLGRP_READLOG, root's CAP_AUDIT_READ): no audit daemon is
needed, and an audit daemon does not take them away from us, unlike the kernel log. Exact:
every denial Landlock made is a record, none is inferred from an error code.

The kernel makes these records only while audit is **enabled** (``auditctl -e 1``, or
``audit=1`` at boot). swatch never switches audit on for you (it is machine-wide): with audit
off, or Landlock below ABI 7, the run says in one line that Landlock's denials hold but are not
shown (:func:`unavailable`).
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable

from syscall_watcher.kernel import syscalls

NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_SYSCALL = 1300
AUDIT_EOE = 1320
AUDIT_LANDLOCK_ACCESS = 1423
AUDIT_LANDLOCK_DOMAIN = 1424
AUDIT_NLGRP_READLOG = 1
_NLMSG = struct.Struct("=LHHLL")

# Landlock's blocker names (security/landlock/audit.c) → the policy operation they hold.
BLOCKER_OPS = {
    "fs.execute": "exec", "fs.write_file": "write", "fs.truncate": "write",
    "fs.make_reg": "write", "fs.make_sym": "write", "fs.make_fifo": "write",
    "fs.make_sock": "write", "fs.make_char": "write", "fs.make_block": "write",
    "fs.read_file": "read", "fs.read_dir": "read", "fs.remove_file": "unlink",
    "fs.remove_dir": "rmdir", "fs.make_dir": "mkdir", "fs.refer": "rename",
    "fs.ioctl_dev": "file_open", "net.bind_tcp": "bind", "net.connect_tcp": "connect",
    "scope.signal": "kill",
}
_SERIAL = re.compile(r"^audit\((\d+)\.(\d+):(\d+)\): ")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def audit_enabled() -> bool | None:
    """Is the kernel's audit enabled (AUDIT_GET)? None when it cannot be asked."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT) as s:
            s.bind((0, 0))
            s.settimeout(2)
            s.send(_NLMSG.pack(_NLMSG.size, AUDIT_GET, 1, 1, 0))
            for _ in range(4):
                data = s.recv(8192)
                _, kind, _, _, _ = _NLMSG.unpack_from(data)
                if kind == AUDIT_GET:
                    return struct.unpack_from("=2L", data, _NLMSG.size)[1] != 0
    except OSError:
        return None
    return None


def unavailable(abi: int) -> str | None:
    """Why this run cannot show Landlock's denials (they still hold), or None."""
    if abi < 7:
        return (f"swatch: Landlock denials hold but are not shown: Landlock ABI {abi} does not "
                "log them (ABI 7, Linux 6.15, does, through audit)\n")
    enabled = audit_enabled()
    if not enabled:
        state = "off" if enabled is False else "not readable"
        return ("swatch: Landlock denials hold but are not shown: the kernel reports them only "
                f"through audit, which is {state} here (`auditctl -e 1`, or audit=1 at boot)\n")
    return None


def _fields(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _FIELD.findall(text)}


class LandlockDenials:
    """Audit records from now on; ``take()`` gives (ktime, line) for the run's denials."""

    def __init__(self, policy: str, pids: Callable[[], set[int]], json_lines: bool = False,
                 color: bool = False) -> None:
        self.policy = policy
        self.pids = pids
        self.json = json_lines
        self.color = color
        self.seen = 0
        self.by_op: dict[str, int] = {}
        self.lost = 0  # netlink overruns: records the kernel dropped on our socket
        # serial → record type → text (0: the event's wall time, ns)
        self._events: dict[str, dict[int, str]] = {}
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_AUDIT)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        self._sock.setblocking(False)
        self.marker_pids: set[int] = set()

    def _read(self) -> list[dict[int, str]]:
        """Whole events (up to their end-of-event record) received so far."""
        done: list[dict[int, str]] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return done
            except OSError:  # ENOBUFS: the kernel dropped records for us; counted, go on
                self.lost += 1
                continue
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind, _, _, _ = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size:
                    break
                text = data[off + _NLMSG.size:off + length].rstrip(b"\0").decode(
                    errors="replace")
                off += (length + 3) & ~3
                m = _SERIAL.match(text)
                if not m:
                    continue
                serial = m.group(3)
                event = self._events.setdefault(serial, {})
                if kind == AUDIT_EOE:
                    del self._events[serial]
                    if AUDIT_LANDLOCK_ACCESS in event:
                        done.append(event)
                else:
                    event[kind] = text[m.end():]
                    # the event's time (CLOCK_REALTIME, ms): when the call was denied
                    event[0] = str(int(m.group(1)) * 10**9 + int(m.group(2)) * 10**6)

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        return self._lines(self._read())

    def _lines(self, events: list[dict[int, str]]) -> list[tuple[int, bytes]]:
        lines = []
        pids = None
        for event in events:
            access = _fields(event[AUDIT_LANDLOCK_ACCESS])
            call = _fields(event.get(AUDIT_SYSCALL, ""))
            domain = _fields(event.get(AUDIT_LANDLOCK_DOMAIN, ""))
            pid = int(call.get("pid") or domain.get("pid") or 0)
            if pid in self.marker_pids:
                continue
            if pids is None:
                pids = self.pids()
            if pid not in pids:
                continue
            blockers = access.get("blockers", "").split(",")
            op = next((BLOCKER_OPS[b] for b in blockers if b in BLOCKER_OPS), blockers[0])
            nr = int(call["syscall"]) if call.get("syscall", "").isdigit() else None
            self.seen += 1
            self.by_op[op] = self.by_op.get(op, 0) + 1
            wall_ns = int(event[0])
            # merged into the stream by kernel time: the record's wall time on the monotonic
            # clock the ring buffers' records carry
            ktime = wall_ns - (time.time_ns() - time.monotonic_ns())
            uid = int(call.get("uid") or domain.get("uid") or 0)
            lines.append((ktime, self._line(
                wall_ns, pid, uid, call.get("comm") or domain.get("comm", "?"), op,
                access.get("path", ""), blockers, nr, call.get("exit", ""))))
        return lines

    def take_all(self) -> list[tuple[int, bytes]]:
        """Everything recorded so far: the kernel sends audit records from its kauditd thread,
        after the call; a Landlock denial of our own, made after the run, is the barrier
        (records go out in order)."""
        marker = _marker_denial()
        if marker is not None:
            self.marker_pids.add(marker)
        lines: list[tuple[int, bytes]] = []
        end = time.monotonic() + 2.0
        found = marker is None
        while True:
            events = self._read()
            found = found or any(
                f" pid={marker} " in e.get(AUDIT_SYSCALL, "") + " " for e in events)
            lines += self._lines(events)
            if found or time.monotonic() > end:
                return lines
            select.select([self._sock], [], [], 0.01)

    def _line(self, wall_ns: int, pid: int, uid: int, comm: str, op: str, path: str,
              blockers: list[str], nr: int | None, exit_code: str) -> bytes:
        name = syscalls.names().get(nr, f"nr{nr}") if nr is not None else None
        err = _errno_name(exit_code)
        if self.json:
            rec = {"type": "denied", "time_ns": wall_ns, "pid": pid, "uid": uid,
                   "comm": comm, "op": op, "target": path, "tier": "landlock",
                   "action": "blocked", **({"errno": err} if err else {}),
                   "policy": self.policy, "blockers": blockers}
            if name is not None:
                rec |= {"syscall": name, "nr": nr}
            return (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        t = wall_ns / 1e9
        ts = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
        word = "\033[1;31mDENIED\033[0m" if self.color else "DENIED"
        call = f" at {name}" if name else ""
        return (f"{ts} {comm}[{pid}] {word} {op} {path}{call} (policy {self.policy}, tier "
                f"landlock: {err or 'denied'}, {','.join(blockers)})\n").encode()

    def close(self) -> None:
        self._sock.close()


def _errno_name(exit_code: str) -> str:
    try:
        n = -int(exit_code)
    except ValueError:
        return ""
    import errno

    return errno.errorcode.get(n, f"E{n}") if n > 0 else ""


def _marker_denial() -> int | None:
    """A child of ours makes one Landlock-denied, logged call (creating a file in /tmp under a
    ruleset that handles file creation and grants nothing); its pid, once it is reaped."""
    from syscall_watcher.sandbox import landlock

    abi = landlock.abi()
    if abi < 7:
        return None
    try:
        ruleset = landlock.Ruleset.build(landlock.FS["make_reg"], 0, 0, [], abi)
    except Exception:  # noqa: BLE001 - no barrier: take_all waits its time limit instead
        return None
    pid = os.fork()
    if pid == 0:
        try:
            landlock.no_new_privs()
            ruleset.restrict_self()
            os.open(f"/tmp/.swatch-landlock-marker-{os.getpid()}", os.O_CREAT | os.O_WRONLY,
                    0o600)
        finally:
            os._exit(0)
    ruleset.close()
    os.waitpid(pid, 0)
    return pid
