"""The enforcer component: load a planned policy, attach, pin, report, unload.

The enforcer (``build/policy.bpf.o``) is independent of the tracer: either can be loaded alone,
or both on the same target. Its pieces: tiers.py plans which tier holds each operation (the
tiers are described there), maps.py encodes the policy into the maps and reads them back, and
kernel/component.py is the pinned-component lifecycle this module declares the enforcer to.

This module is over 400 lines only while it still holds the denial rendering and the
DenialStreamer (the second half); they move to policy/denials.py (issue 11, branch schema),
which leaves the enforcer component alone here (~210 lines).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from syscall_watcher.errors import BpfError, SwatchError
from syscall_watcher.kernel import libbpf, syscalls
from syscall_watcher.kernel.component import (
    Component,
    LoadedComponent,
    PinnedComponent,
    PinState,
    pin_dir_from,
)
from syscall_watcher.kernel.libbpf import BpfObject, Link, RingConsumer, lib
from syscall_watcher.kernel.system import require_btf, require_root
from syscall_watcher.policy.language import OPERATIONS, Policy
from syscall_watcher.policy.maps import MAPS, PolicySession, cstr
from syscall_watcher.policy.tiers import (
    TIER_NAMES,
    TRACKING_PROGS,
    OpPlan,
    bpf_object_path,
    check_preventive,
    plan,
    programs_for,
)
from syscall_watcher.targets.process import PidFd, add_existing, descendants
from syscall_watcher.targets.target import Target, max_pids_for
from syscall_watcher.text import from_c, printable
from syscall_watcher.trace.stream import Output, tell

DEFAULT_PIN_DIR = "/sys/fs/bpf/syscall_watcher_policy"


def pin_dir_default(value: str | Path | None = None) -> Path:
    """--pin-dir's value, else $SWATCH_POLICY_PIN_DIR, else the default; empty is an error."""
    return pin_dir_from(value, "SWATCH_POLICY_PIN_DIR", DEFAULT_PIN_DIR)


# Every program the enforcer can attach and pin (links/<name>), in the bit order of
# meta.links. APPEND ONLY: pins record the mask, so a reordering would misread them (bump
# SWP_VERSION if one is ever removed). tests/test_pin_safety.py checks it against the object.
LINK_NAMES: tuple[str, ...] = (
    "swp_fork", "swp_exit", "swp_sys_enter",
    "swp_connect4", "swp_connect6", "swp_sendmsg4", "swp_sendmsg6", "swp_bind4", "swp_bind6",
    "swp_sock_create",
    *(f"{prefix}_{hook}" for prefix in ("swp_lsm", "swp_fmr") for hook in (
        "bprm_check", "file_open", "file_permission", "path_link", "path_mkdir", "path_mknod",
        "path_rename", "path_rmdir", "path_symlink", "path_truncate", "path_unlink",
        "socket_bind", "socket_connect", "socket_create", "socket_listen", "socket_sendmsg",
        "task_alloc", "task_kill")),
    # added later: at the end, so the bits above keep their meaning
    *(f"{prefix}_{hook}" for prefix in ("swp_lsm", "swp_fmr")
      for hook in ("mmap_file", "file_mprotect")),
)

POLICY = Component(
    kind="policy", noun="policy pins", maps=tuple(MAPS), links=LINK_NAMES,
    version=lib.SWP_VERSION, meta_type="struct swp_meta", object_path=bpf_object_path,
    unload_cmd="swatch policy-unload",
    load_hint="swatch policy-load --pid PID --policy POLICY",
)


class LoadedPolicy(LoadedComponent, PolicySession):
    """An enforcer this process loaded: owns the object and (until pinned) the links."""

    COMPONENT = POLICY

    def __init__(self, obj: BpfObject, links: dict[str, Link], plans: list[OpPlan]) -> None:
        super().__init__(obj, links)
        self.plans = plans

    @classmethod
    def load(cls, policy: Policy, target: Target, plans: list[OpPlan],
             audit_only: bool = False) -> LoadedPolicy:
        require_root()
        require_btf()
        if target.mode not in ("pid", "cgroup"):
            raise SwatchError("policy-load needs a target: --pid PID or --container REF")
        wanted, cgroup_progs = programs_for(plans, target.mode)
        cgroup_fd = -1
        if cgroup_progs:
            from syscall_watcher.targets.containers import cgroup_v2_root

            cgroup_fd = os.open(cgroup_v2_root(), os.O_RDONLY | os.O_DIRECTORY)
        obj = BpfObject(bpf_object_path())
        links: dict[str, Link] = {}
        held: PidFd | None = None
        try:
            for name, prog in obj.programs.items():
                prog.set_autoload(name in wanted)
            cfg = libbpf.new("struct swp_config *")
            cfg.mode = lib.SW_TARGET_PID if target.mode == "pid" else lib.SW_TARGET_CGROUP
            cfg.audit_only = 1 if audit_only else 0
            cfg.target_cgroup = target.cgroup_id
            cfg.target_cgroup_level = target.cgroup_level
            # The cgroup tier sees only "targets": a child it has no room for is killed.
            cfg.kill_untracked = 1 if target.mode == "pid" and cgroup_progs else 0
            obj.set_rodata(cfg)
            max_pids = max_pids_for(target)
            obj.set_max_entries("targets", max_pids)
            obj.load()
            loaded = cls(obj, links, plans)
            held = PidFd(target.pid) if target.mode == "pid" else None
            loaded.write_policy(policy, target, plans, audit_only, max_pids)
            # Track the process tree first, so no child escapes between attach and fill.
            for name in sorted(wanted, key=lambda n: n not in TRACKING_PROGS):
                prog = obj.programs[name]
                if name in cgroup_progs:
                    loaded.links[name] = prog.attach_cgroup(cgroup_fd)
                else:
                    loaded.links[name] = prog.attach()
            if target.mode == "pid":
                add_existing(loaded, descendants(target.pid, skip=os.getpid()), max_pids)
            if held is not None and held.exited():
                # It died while we loaded: its exit may have passed before its pid was
                # written, and a reused pid would inherit the policy. Fail, leave nothing.
                raise SwatchError(f"process {target.pid} exited while the policy was "
                                  "loading; nothing was loaded")
            return loaded
        except BaseException:
            for link in links.values():
                link.destroy()
            obj.close()
            raise
        finally:
            if held is not None:
                held.close()
            if cgroup_fd >= 0:
                os.close(cgroup_fd)


def policy_state(pin_dir: Path) -> PinState:
    """What pin_dir holds (component.py defines absent / loaded / stale / foreign)."""
    return POLICY.status(pin_dir)


def policy_status(pin_dir: Path) -> str:
    """'absent', 'loaded', 'stale' or 'foreign': loaded only when every link is pinned."""
    return POLICY.status(pin_dir).state


class PinnedPolicy(PinnedComponent, PolicySession):
    """The maps of a policy loaded earlier by `swatch policy-load`."""

    COMPONENT = POLICY


def load_pinned(policy: Policy, target: Target, pin_dir: Path, audit_only: bool = False,
                require_preventive: bool = False,
                forced_tier: str | None = None) -> tuple[Path, list[OpPlan]]:
    """`swatch policy-load`: probe, load, attach, pin, return. Nothing stays half-loaded."""
    require_root()
    require_btf()
    POLICY.require_free(pin_dir, already=f"a policy is already loaded (pins in {pin_dir}); "
                        "`swatch policy-unload` first")
    plans = plan(policy, forced_tier)
    check_preventive(plans, require_preventive)
    try:
        loaded = LoadedPolicy.load(policy, target, plans, audit_only)
    except BpfError:
        if not any(p.tier in ("lsm", "fmod_ret") for p in plans):
            raise
        # A hook the quick probe did not cover was refused: probe operation by operation.
        plans = plan(policy, forced_tier, thorough=True)
        check_preventive(plans, require_preventive)
        loaded = LoadedPolicy.load(policy, target, plans, audit_only)
    try:
        loaded.pin(pin_dir)
    finally:
        loaded.close()
    return pin_dir, plans


def unload(pin_dir: Path) -> list[str] | None:
    """Remove the policy's pins; None if there were none, else what was left behind."""
    require_root()
    return POLICY.unload(pin_dir)


# --------------------------------------------------------------------------- denials

# Numbers from bpf/policy.h through cffi, never copied (tests/test_constants.py ties the names).
ACTION_NAMES = {lib.SWP_ACT_BLOCKED: "blocked", lib.SWP_ACT_KILLED: "killed",
                lib.SWP_ACT_AUDIT: "audit"}
_FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


def _denied_str(cdata) -> str:  # type: ignore[no-untyped-def]
    """A string from a denial record, exact: non-UTF-8 bytes surrogate-escaped (text.py)."""
    return from_c(libbpf.to_bytes(cdata))


def _sockaddr(data: bytes) -> str:
    if len(data) < 2:
        return "?"
    family = int.from_bytes(data[:2], "little")
    if family == socket.AF_INET and len(data) >= 8:
        port = int.from_bytes(data[2:4], "big")
        return f"{socket.inet_ntop(socket.AF_INET, data[4:8])}:{port}"
    if family == socket.AF_INET6 and len(data) >= 24:
        port = int.from_bytes(data[2:4], "big")
        return f"[{socket.inet_ntop(socket.AF_INET6, data[8:24])}]:{port}"
    if family == socket.AF_UNIX:
        path = data[2:]
        if path[:1] == b"\0":
            return "@" + from_c(path[1:])
        return from_c(path) or "unix"
    return _FAMILIES.get(family, f"family {family}")


def denial_dict(ev, policy: str, rule_paths: list[str], clock_offset: int) -> dict:  # type: ignore[no-untyped-def,type-arg]
    kind = ev.target_kind
    target: str = ""
    if kind == lib.SWP_TGT_PATH:
        # The kernel walks a path from the file up (bpf/include/vfs_path.bpf.h): a cut path lost the
        # components nearest the root, so the mark goes in front.
        target = ("..." if ev.trunc else "") + _denied_str(ev.target)
    elif kind == lib.SWP_TGT_ADDR:
        target = _sockaddr(libbpf.to_bytes(ev.target)[: ev.target_len])
    elif kind == lib.SWP_TGT_PID:
        target = f"pid {ev.aux} signal {ev.aux2}"
    elif kind == lib.SWP_TGT_SOCKET:
        target = (f"{_FAMILIES.get(ev.aux, f'family {ev.aux}')} "
                  f"{_TYPES.get(ev.aux2 & 0xF, f'type {ev.aux2}')}")
    op = OPERATIONS[ev.op] if ev.op < len(OPERATIONS) else f"op{ev.op}"
    if ev.rule == lib.SWP_RULE_BLOCK:
        rule = "block"
    elif ev.rule == lib.SWP_RULE_UNCHECKED:
        rule = "unchecked path"  # unreadable or too long to compare: denied (fail closed)
    else:
        rule = rule_paths[ev.rule] if ev.rule < len(rule_paths) else f"rule {ev.rule}"
    sys_name = None
    if ev.nr != 0xFFFFFFFF:
        sys_name = syscalls.names().get(ev.nr, str(ev.nr))
    hdr = ev.hdr  # struct sw_event_hdr, as every tracer record has
    return {
        "type": "denied",
        "time": (hdr.ktime_ns + clock_offset) / 1e9,
        "pid": hdr.pid, "tid": hdr.tid, "ppid": hdr.ppid, "uid": hdr.uid,
        "comm": _denied_str(hdr.comm), "cgroup_id": hdr.cgroup_id,
        "op": op, "target": target,
        "action": ACTION_NAMES.get(ev.action, "?"),
        "tier": TIER_NAMES.get(ev.tier, "?"),
        "policy": policy, "rule": rule, "syscall": sys_name,
        "truncated": bool(kind == lib.SWP_TGT_PATH and ev.trunc),
    }


def denial_line(d: dict, color: bool = False) -> str:  # type: ignore[type-arg]
    ts = time.strftime("%H:%M:%S", time.localtime(d["time"])) + f".{int(d['time'] * 1000) % 1000:03d}"
    target = f" {printable(d['target'])}" if d["target"] else ""
    who = f"{printable(d['comm'])}[{d['pid']}]"
    if d["action"] == "audit":
        word, tail = "AUDIT", f" (policy {d['policy']}: would be denied, --audit-only)"
    elif d["action"] == "killed":
        word, tail = "DENIED", f" ({d['policy']}) — killed after (SIGKILL at {d['syscall']})"
    else:
        word, tail = "DENIED", f" ({d['policy']})"
    if color:
        word = f"\033[1;31m{word}\033[0m"
    return f"{ts} {who} {word} {d['op']}{target}{tail}\n"


class DenialStreamer:
    """Reads the enforcer's own denial ring buffer and writes lines (human or JSON). With a
    tracer's Streamer, ``take()`` hands the lines over to be merged with its events in time
    order; alone, ``pump()`` writes them."""

    def __init__(self, session: PolicySession, out: Output | BinaryIO, json_lines: bool = False,
                 color: bool = False, notices: TextIO | None = None) -> None:
        self.session = session
        self.out = out if isinstance(out, Output) else Output(out)
        self.json = json_lines
        self.color = color
        self.notices = notices
        self.policy = session.policy_name()
        self.rule_paths = session.path_rules()
        self._consumer: RingConsumer | None = RingConsumer(session.maps["denials"])
        self._offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
            time.CLOCK_MONOTONIC)
        counts = session.counts()
        self._dropped_seen = counts.dropped
        self._untracked_seen = counts.untracked + counts.unmarked
        self._told_failure = False
        self.seen = 0

    def __enter__(self) -> DenialStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self) -> Iterator[dict]:  # type: ignore[type-arg]
        """Each denial of the current batch."""
        return (d for _, d in self.timed_records())

    def timed_records(self) -> Iterator[tuple[int, dict]]:  # type: ignore[type-arg]
        """(ktime_ns, denial) for each denial of the current batch."""
        assert self._consumer is not None
        data = self._consumer.batch()
        pos = 0
        size = libbpf.sizeof("struct swp_denial")
        while pos + 4 <= len(data):
            rec_size = int.from_bytes(data[pos + 2:pos + 4], "little")
            if rec_size == 0:
                break
            if int.from_bytes(data[pos:pos + 2], "little") == lib.SWP_EV_DENIAL:
                ev = libbpf.from_bytes("struct swp_denial", data[pos:pos + size])
                yield int(ev.hdr.ktime_ns), denial_dict(ev, self.policy, self.rule_paths,
                                                    self._offset)
            pos += (rec_size + 7) & ~7

    def _lines(self) -> list[tuple[int, bytes]]:
        out = []
        for ktime, d in self.timed_records():
            line = json.dumps(d) + "\n" if self.json else denial_line(d, self.color)
            out.append((ktime, line.encode()))
        self.seen += len(out)
        return out

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        """(ktime_ns, line) for what is queued now (waiting up to timeout_ms)."""
        assert self._consumer is not None
        lines = self._lines() if self._consumer.poll(timeout_ms) else []
        self.check_drops()
        return lines

    def take_all(self) -> list[tuple[int, bytes]]:
        """Everything still queued, without waiting."""
        assert self._consumer is not None
        lines: list[tuple[int, bytes]] = []
        while self._consumer.drain():
            lines += self._lines()
        self.check_drops()
        return lines

    def pump(self, timeout_ms: int = 0) -> int:
        lines = self.take(timeout_ms)
        for _, line in lines:
            self._emit(line)
        return len(lines)

    def finish(self) -> None:
        for _, line in self.take_all():
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        if not self.out.write(line) and not self._told_failure:
            self._told_failure = True
            tell(self.notices, f"swatch: {self.out.describe_error()}; stopped writing after "
                               f"{self.out.lines} lines\n")

    def check_drops(self) -> None:
        counts = self.session.counts()
        untracked = counts.untracked + counts.unmarked
        if untracked != self._untracked_seen:
            tell(self.notices, f"swatch: {untracked - self._untracked_seen} processes of the "
                               "target found no room in the policy's map (--max-pids); see "
                               "`swatch policy-summary`\n")
        self._untracked_seen = untracked
        total = counts.dropped
        new = total - self._dropped_seen
        if new <= 0:
            return
        self._dropped_seen = total
        if self.json:
            self._emit(json.dumps({"type": "denials_lost", "dropped": new,
                                   "total_dropped": total}).encode() + b"\n")
        tell(self.notices, f"swatch: {new} denial records lost (ring buffer full; still "
                           f"counted: `swatch policy-summary`)\n")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def summary(session: PolicySession) -> dict:  # type: ignore[type-arg]
    meta = session.meta()
    counts = session.counts()
    rules = session.rules()
    paths = session.path_rules()
    return {
        "policy": cstr(meta.policy),
        "target": cstr(meta.target_label),
        "audit_only": bool(meta.audit_only),
        "tiers": session.tiers(),
        "denials": {op: n for op, n in counts.by_op.items() if op in session.tiers()},
        "rules": [{"path": p, "ops": [op for i, op in enumerate(OPERATIONS)
                                      if rules.paths[k].ops & (1 << i)],
                   "denials": counts.by_rule.get(k, 0)} for k, p in enumerate(paths)],
        "total": counts.emitted,
        "records_lost": counts.dropped,
        "max_pids": int(meta.max_pids),
        "untracked": counts.untracked,
        "killed_untracked": counts.killed_untracked,
        "unmarked": counts.unmarked,
        "pids": session.pids() if meta.mode == lib.SW_TARGET_PID else [],
    }


def render_summary(s: dict) -> str:  # type: ignore[type-arg]
    mode = " (audit only)" if s["audit_only"] else ""
    lines = [f"swatch — policy {s['policy']}{mode} on {s['target']}: {s['total']:,} denials"]
    lines.append(f"  {'OPERATION':12} {'TIER':9} {'DENIALS':>9}")
    for op, n in s["denials"].items():
        lines.append(f"  {op:12} {s['tiers'].get(op, '-'):9} {n:>9,}")
    if s["rules"]:
        labels = [f"{r['path']} ({' '.join(r['ops'])})" for r in s["rules"]]
        width = max(22, *(len(label) for label in labels))
        lines.append(f"  {'PATH RULE':{width}} {'DENIALS':>9}")
        for label, r in zip(labels, s["rules"]):
            lines.append(f"  {label:{width}} {r['denials']:>9,}")
    if s.get("untracked"):
        lines.append(f"  WARNING: {s['untracked']:,} processes of the target found no room in its "
                     f"map (--max-pids {s['max_pids']:,}); policed by task-local storage, and "
                     f"{s['killed_untracked']:,} killed at their first syscall (the cgroup tier "
                     "cannot see them)")
    if s.get("unmarked"):
        lines.append(f"  WARNING: {s['unmarked']:,} children could not be tracked at all (out of "
                     "memory): their parent was killed")
    if s["records_lost"]:
        lines.append(f"  {s['records_lost']:,} denial records lost (ring buffer full); "
                     "counted above")
    return "\n".join(lines) + "\n"
