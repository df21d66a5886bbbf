"""Policy phases: switch a loaded enforcer from one phase to another, and the `phase` record.

Every phase's rules are written into the enforcer's ``rules`` map at load (entry i = phase i);
the ``phase`` map says which entry every check reads. A switch is one update of ``phase``
(maps.PolicySession.set_phase): the kernel goes from the old phase's rules to the new ones at
once, never through a mix. The same value carries the switch's sequence number, the phase
before it and its time, so a reader of the pins (``swatch watch``, ``swatch serve``) sees each
switch: :class:`PhaseLines` turns new ones into `phase` records in the stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.errors import SwatchError
from syscall_watcher.policy.language import OPERATIONS
from syscall_watcher.policy.maps import PolicySession, cstr

EVERYWHERE = "everywhere"


@dataclass
class PhaseSwitch:
    """One switch: what the kernel denied before and after, per operation."""

    policy: str
    previous: str
    phase: str
    seq: int
    time_ns: int
    added: dict[str, list[str]] = field(default_factory=dict)    # op -> where now denied
    removed: dict[str, list[str]] = field(default_factory=dict)  # op -> where now allowed

    def record(self) -> dict:  # type: ignore[type-arg]
        """The `phase` record (records.schema.json), as watch/serve/audit write it."""
        return {"type": "phase", "time_ns": self.time_ns, "policy": self.policy,
                "phase": self.phase, "previous": self.previous, "seq": self.seq,
                "added": self.added, "removed": self.removed}

    def change_lines(self) -> list[str]:
        """One line per operation whose rules changed, for people."""
        lines = []
        for op in OPERATIONS:
            parts = []
            if op in self.removed:
                parts.append("no longer denied " + ", ".join(self.removed[op]))
            if op in self.added:
                parts.append("now denied " + ", ".join(self.added[op]))
            if parts:
                lines.append(f"{op}: {'; '.join(parts)}")
        return lines or ["no rule changed"]


def _denied(session: PolicySession, index: int) -> dict[str, set[str]]:
    """op -> where phase ``index`` denies it (EVERYWHERE or path rules)."""
    r = session.rules(index)
    out: dict[str, set[str]] = {}
    for i, op in enumerate(OPERATIONS):
        if r.block & (1 << i):
            out.setdefault(op, set()).add(EVERYWHERE)
        for k in range(int(r.npaths)):
            if r.paths[k].ops & (1 << i):
                out.setdefault(op, set()).add(cstr(r.paths[k].path))
    return out


def diff(session: PolicySession, before: int, after: int, seq: int,
         time_ns: int) -> PhaseSwitch:
    """The switch from phase ``before`` to ``after`` (indexes), from the loaded rules."""
    names = session.phase_names()
    old, new = _denied(session, before), _denied(session, after)
    switch = PhaseSwitch(policy=session.policy_name(), previous=names[before],
                         phase=names[after], seq=seq, time_ns=time_ns)
    for op in OPERATIONS:
        gone = sorted(old.get(op, set()) - new.get(op, set()))
        came = sorted(new.get(op, set()) - old.get(op, set()))
        if gone:
            switch.removed[op] = gone
        if came:
            switch.added[op] = came
    return switch


def switch_phase(session: PolicySession, name: str) -> PhaseSwitch | None:
    """Make the loaded policy enforce phase ``name``: one map update. None when it already
    does (nothing written). SwatchError, nothing changed, for a policy without phases or a
    phase it does not define (the message lists those it does)."""
    names = session.phase_names()
    policy = session.policy_name()
    if not names:
        raise SwatchError(f"policy {policy} defines no phases; nothing changed (phases: "
                          "docs/policy.md, \"Phases\")")
    if name not in names:
        raise SwatchError(f"policy {policy} has no phase {name!r}; its phases: "
                          f"{', '.join(names)}; nothing changed")
    state = session.phase_state()
    current, index = int(state.current), names.index(name)
    if current == index:
        return None
    seq = int(state.seq) + 1
    session.set_phase(index, current, seq)
    return diff(session, current, index, seq, int(session.phase_state().time_ns))


def switch_pinned(pin_dir: Path, name: str) -> PhaseSwitch | None:
    """`swatch policy phase NAME` on the policy pinned in ``pin_dir`` (see switch_phase).
    For a caller that records switches (the audit log): ``switch.record()``."""
    from syscall_watcher.policy.enforcer import PinnedPolicy

    session = PinnedPolicy.open(pin_dir)
    try:
        return switch_phase(session, name)
    finally:
        session.close()


def render_line(record: dict, color: bool = False) -> str:  # type: ignore[type-arg]
    """A `phase` record as a human line of the stream."""
    t = record["time_ns"] / 1e9
    ts = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    word = "\033[1;33mPHASE\033[0m" if color else "PHASE"
    sw = PhaseSwitch(policy=record["policy"], previous=record["previous"],
                     phase=record["phase"], seq=record["seq"], time_ns=record["time_ns"],
                     added=record["added"], removed=record["removed"])
    missed = record.get("missed")
    extra = f"; {missed} earlier switches not seen" if missed else ""
    return (f"{ts} {word}   policy {sw.policy}: {sw.previous} -> {sw.phase} "
            f"({'; '.join(sw.change_lines())}{extra})\n")


class PhaseLines:
    """The loaded policy's phase switches as stream lines (Streamer.pump(extra=...)): each
    poll reads the ``phase`` map and turns a new switch into a `phase` record. Switches made
    between two polls (LIVE_MS apart) show as the last one, with ``missed`` saying how many
    were not seen one by one."""

    def __init__(self, session: PolicySession, json_lines: bool = False,
                 color: bool = False) -> None:
        self.session = session
        self.json = json_lines
        self.color = color
        self.seen = int(session.phase_state().seq)
        self.records: list[dict] = []  # type: ignore[type-arg]

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        try:
            state = self.session.phase_state()
        except SwatchError:
            return []
        seq = int(state.seq)
        if seq <= self.seen:
            return []
        rec = diff(self.session, int(state.previous), int(state.current), seq,
                   int(state.time_ns)).record()
        if seq - self.seen > 1:
            rec["missed"] = seq - self.seen - 1
        self.seen = seq
        self.records.append(rec)
        line = (json.dumps(rec, separators=(",", ":")) + "\n" if self.json
                else render_line(rec, self.color))
        return [(int(state.ktime_ns), line.encode())]

    def take_all(self) -> list[tuple[int, bytes]]:
        return self.take()
