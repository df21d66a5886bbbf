"""`swatch record`: an OCI seccomp profile and a draft swatch policy from an observed run.

The profile's syscall list comes from the tracer's in-kernel per-syscall counts (the `stats`
map: every call of every traced process, counted at sys_exit, exact whatever the event load).
The argument filters (--args) and the draft policy need arguments and paths, which only events
carry: they are used only where the events are provably complete — a syscall is narrowed by
its arguments only when the events seen for it number exactly its in-kernel count."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syscall_watcher.errors import SwatchError
from syscall_watcher.sandbox import oci
from syscall_watcher.tls.redact import redact_argv

#: Calls whose events the record keeps (arguments, paths, addresses).
EVENT_CALLS = ("execve", "execveat", "open", "openat", "openat2", "creat", "connect", "socket",
               "clone")
#: Argument filters --args may write: syscall → (argument index, (what it is, its plural)).
ARG_FILTERS = {"socket": (0, ("address family", "address families")),
               "clone": (0, ("flags", "flags"))}
_U64 = (1 << 64) - 1
_O_ACCMODE, _O_CREAT, _O_TRUNC = 0o3, 0o100, 0o1000

#: Policy operation → the syscalls that do it (a draft blocks an operation none of them did).
OP_SYSCALLS: dict[str, tuple[str, ...]] = {
    "exec": ("execve", "execveat"),
    "connect": ("connect",),
    "socket": ("socket", "socketpair"),
    "bind": ("bind",),
    "listen": ("listen",),
    "fork": ("fork", "vfork", "clone", "clone3"),
    "kill": ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
             "pidfd_send_signal"),
    "unlink": ("unlink", "unlinkat"),
    "rename": ("rename", "renameat", "renameat2"),
    "mkdir": ("mkdir", "mkdirat"),
    "rmdir": ("rmdir", "unlinkat"),
}
#: Directories a draft protects from writes when the run wrote nothing under them.
SYSTEM_DIRS = ("/bin", "/boot", "/etc", "/lib", "/lib64", "/opt", "/root", "/sbin", "/srv",
               "/usr", "/var")


@dataclass
class Observation:
    what: str  # the command line, or the target's label
    counts: dict[str, int]  # in-kernel: syscall name → calls
    events: list[dict[str, Any]]
    dropped: int  # events the ring could not queue
    exit_code: int | None = None  # CMD's (run mode)
    first_exec: bool = False  # the run's own execve of CMD is among the counts

    def events_of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "syscall" and e["syscall"] == name]


@dataclass
class Recording:
    profile: dict[str, Any]
    policy: str
    notes: list[str] = field(default_factory=list)
    seen: int = 0  # syscalls the run made
    runtime_added: list[str] = field(default_factory=list)


def _read_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _selection() -> Any:
    from syscall_watcher.trace.view import select_syscalls

    return select_syscalls(None, [",".join(EVENT_CALLS)])


def _names(stats: dict[int, dict[str, Any]]) -> dict[str, int]:
    from syscall_watcher.kernel import syscalls

    names = syscalls.names()
    return {names.get(nr, f"nr{nr}"): int(s["count"]) for nr, s in stats.items()}


def observe_command(argv: list[str]) -> Observation:
    """Run CMD traced from its first syscall (as `swatch run`), keeping the counts and the
    events of EVENT_CALLS."""
    from syscall_watcher.trace.output import Output
    from syscall_watcher.trace.run import run_traced
    from syscall_watcher.trace.view import TraceView

    sel = _selection()
    with tempfile.TemporaryDirectory(prefix="swatch-record-") as tmp:
        path = Path(tmp) / "events.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        out = Output(fd, str(path))
        try:
            result = run_traced(argv, profile=sel.label, json=True, out=out,
                                enabled=sel.syscalls, notices=None,
                                view=TraceView.for_selection(sel, json=True))
        finally:
            out.close()
        events = _read_events(path)
    return Observation(shlex.join(redact_argv(argv)), _names(result.tracer_stats), events,
                       result.dropped, result.exit_code, first_exec=True)


def observe_target(target: Any, duration: float | None) -> Observation:
    """Trace a running tree or container until --duration, Ctrl-C/SIGTERM, or its end."""
    from syscall_watcher.trace.output import Output, StopSignals
    from syscall_watcher.trace.stream import LIVE_MS, Streamer
    from syscall_watcher.trace.tracer import LoadedTracer
    from syscall_watcher.trace.view import TraceView

    sel = _selection()
    end = time.monotonic() + duration if duration else None
    with StopSignals() as stop, tempfile.TemporaryDirectory(prefix="swatch-record-") as tmp:
        path = Path(tmp) / "events.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        out = Output(fd, str(path))
        tracer = LoadedTracer.load(target, sel.label, enabled=sel.syscalls)
        try:
            with Streamer(tracer, out, json=True,
                          view=TraceView.for_selection(sel, json=True)) as s:
                while not stop.requested and (end is None or time.monotonic() < end):
                    s.pump(LIVE_MS)
                    if _target_gone(target, tracer):
                        break
                s.finish()
                dropped = s.dropped_during
            counts = _names(tracer.syscall_stats())
        finally:
            tracer.close()
            out.close()
        events = _read_events(path)
    return Observation(target.label, counts, events, dropped)


def _target_gone(target: Any, tracer: Any) -> bool:
    if target.mode == "cgroup":
        return not os.path.isdir(target.cgroup_path)
    if target.mode == "pid":
        return not any(os.path.exists(f"/proc/{p}")
                       for p in (*target.all_pids, *tracer.pids()))
    return False


def _arg_rules(obs: Observation, notes: list[str]) -> tuple[list[dict[str, Any]], set[str]]:
    """Rules allowing socket only for the families seen and clone only with flags seen;
    the names they narrow."""
    rules: list[dict[str, Any]] = []
    narrowed: set[str] = set()
    for name, (index, what) in ARG_FILTERS.items():
        count = obs.counts.get(name, 0)
        if not count:
            continue
        evs = obs.events_of(name)
        if len(evs) != count or any("args" not in e for e in evs):
            notes.append(f"{name} not narrowed: {len(evs)} of its {count} calls were seen "
                         "with their arguments (the ring dropped events)")
            continue
        values = {int(e["args"][index]) & _U64 for e in evs}
        if name == "socket":
            families = sorted({v & 0xFFFFFFFF for v in values})
            for fam in families:
                rules.append({"action": "SCMP_ACT_ALLOW", "names": [name], "args": [
                    {"index": index, "op": "SCMP_CMP_EQ", "value": fam, "valueTwo": 0}]})
            notes.append(f"socket narrowed to the {what[len(families) > 1]} "
                         f"seen: {', '.join(map(str, families))}")
        else:
            seen = 0
            for v in values:
                seen |= v
            rules.append({"action": "SCMP_ACT_ALLOW", "names": [name], "args": [
                {"index": index, "op": "SCMP_CMP_MASKED_EQ", "value": ~seen & _U64,
                 "valueTwo": 0}]})
            notes.append(f"clone narrowed to flags within those seen ({seen:#x}): a call with "
                         "any other flag fails with EPERM")
        narrowed.add(name)
    return rules, narrowed


def make_profile(obs: Observation, with_args: bool = False,
                 runtime: bool = True) -> Recording:
    notes: list[str] = []
    seen = {n for n, c in obs.counts.items() if c and not n.startswith("nr")}
    allowed = seen | set(oci.NEVER_RETURN)
    added: list[str] = []
    if runtime:
        extra = set(oci.runtime_syscalls()) - allowed
        added = sorted(extra)
        allowed |= extra
    rules: list[dict[str, Any]] = []
    if with_args:
        rules, narrowed = _arg_rules(obs, notes)
        allowed -= narrowed
    profile = oci.profile_document(allowed, rules)
    return Recording(profile, draft_policy(obs), notes, len(seen), added)


def _written_dirs(obs: Observation) -> set[str]:
    dirs: set[str] = set()
    # (openat2's flags are in memory, out of the event: its opens are not counted here)
    for name in ("open", "openat", "creat"):
        for e in obs.events_of(name):
            if e.get("ret", -1) < 0 or "path" not in e:
                continue
            flags = int(e["args"][1 if name in ("open", "creat") else 2]) if "args" in e else 0
            if name != "creat" and not (flags & _O_ACCMODE or flags & (_O_CREAT | _O_TRUNC)):
                continue
            p = e["path"]
            if not p.startswith("/"):
                base = e.get("fd_name", "")
                p = os.path.join(base, p) if base.startswith("/") else ""
            if p:
                dirs.add(os.path.dirname(os.path.normpath(p)) or "/")
    return dirs


def draft_policy(obs: Observation) -> str:
    """A policy in the line format that denies what the run did not do: the operations none
    of whose syscalls it made, and writes under the system directories it wrote nothing in."""
    execs = sorted({e["filename"] for e in obs.events if e.get("type") == "exec"})
    written = sorted(_written_dirs(obs))
    endpoints = sorted({e["addr"] for e in obs.events_of("connect") if e.get("addr")})
    lines = [f"# swatch record: draft policy from an observed run of {obs.what}",
             ("# It denies what that run did not do: try it with "
              "`swatch policy load --audit-only` first."),
             f"# programs exec'd: {', '.join(execs) or 'none'}",
             f"# directories written: {', '.join(written) or 'none'}",
             f"# endpoints connected: {', '.join(endpoints) or 'none'}"]
    if obs.dropped:
        lines.append(f"# incomplete: the ring dropped {obs.dropped} events; the lists above may "
                     "miss some (the blocks below come from the in-kernel counts)")
    blocks = []
    for op, calls in OP_SYSCALLS.items():
        n = sum(obs.counts.get(c, 0) for c in calls)
        if op == "exec" and obs.first_exec:
            n -= 1  # the run's own exec of CMD
        if n <= 0:
            blocks.append(op)
    if blocks:
        lines.append("block " + " ".join(blocks))
    path_ops = ["write"] + [op for op in ("unlink", "rename", "mkdir", "rmdir")
                            if op not in blocks]
    seen_real: set[str] = set()
    for d in SYSTEM_DIRS:
        real = os.path.realpath(d)
        if not os.path.isdir(real) or real in seen_real:
            continue
        if any(w == real or w.startswith(real.rstrip("/") + "/") or
               os.path.realpath(w).startswith(real.rstrip("/") + "/") for w in written):
            continue
        seen_real.add(real)
        lines.append(f"protect {d} {' '.join(path_ops)}")
    return "\n".join(lines) + "\n"


def check_outputs(profile_path: str, policy_path: str | None) -> None:
    """Before anything runs: the files can be created where asked."""
    for p in (profile_path, policy_path):
        if p is None:
            continue
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise SwatchError(f"cannot write {p}: no directory {parent}")
        if os.path.isdir(p):
            raise SwatchError(f"cannot write {p}: it is a directory")
        if not os.access(parent, os.W_OK):
            raise SwatchError(f"cannot write {p}: {parent} is not writable")


def write_atomically(path: str, text: str) -> None:
    """Whole or not at all: a temporary file in the same directory, renamed."""
    parent = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".swatch-", dir=parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SwatchError(f"cannot write {path}: {err.strerror}") from None


def default_policy_path(profile_path: str) -> str:
    root, _ = os.path.splitext(profile_path)
    return root + ".policy"
