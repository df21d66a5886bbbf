"""Where serve's one stream goes: the JSON log as written, and the audit log.

serve reads every ring it is attached to (the tracer's events, a policy's denials) with ONE
Streamer, so its records come out merged in kernel-time order; its output is a ``ServeOutput``.
That passes the JSON lines to ``--json-log`` as they are, and keeps for the audit log the
denials (always), the event kinds ``--events`` names, and each ``lost`` line (a ring buffer was
full) as a gap record. What it keeps for the audit log is appended once per ``flush()`` — once
per pump of the stream: one write, one fsync.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from syscall_watcher.audit import AuditLog
from syscall_watcher.errors import SwatchError
from syscall_watcher.serve.jsonlog import RotatingJsonLog
from syscall_watcher.trace.stream import Output

RECORD_TYPES = ("syscall", "exec", "fork", "exit", "denied", "tls", "http", "llm", "step")
TLS_TYPES = ("tls", "http", "llm")  # made with --tls (and --agent)
TRACE_TYPES = ("syscall", "exec", "fork", "exit")  # the tracer's record types --events names
DEFAULT_EVENTS = "denied"
RING_FULL = "ring buffer full"


@dataclass(frozen=True)
class EventKinds:
    """What ``--events`` names: record types (exec, fork, exit, syscall, denied; tls, http,
    llm with --tls; step with --agent) and syscall names (connect: the syscall records of
    connect). Denials are always kept, and with --agent the step records (their flags)."""

    types: frozenset[str] = frozenset()
    syscalls: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, value: str, syscall_names: set[str], tls: bool = False,
              agent: bool = False) -> EventKinds:
        types, calls = set(), set()
        for name in (x.strip() for x in value.split(",")):
            if not name:
                continue
            if name == "step" and not agent:
                raise SwatchError(f"--events {value}: step records come with --agent")
            if name in TLS_TYPES and not (tls or agent):
                raise SwatchError(f"--events {value}: {name} records come with --tls "
                                  "(or --agent)")
            if name in RECORD_TYPES:
                types.add(name)
            elif name in syscall_names:
                calls.add(name)
            else:
                raise SwatchError(f"--events {value}: {name!r} is neither a record type ("
                                  f"{', '.join(RECORD_TYPES)}) nor a system call name")
        types.add("denied")
        if agent:
            types.add("step")
        return cls(frozenset(types), frozenset(calls))

    @property
    def traced(self) -> bool:
        """Does the audit log want anything from the tracer's ring?"""
        return bool(self.syscalls) or bool(self.types - {"denied"})

    def wants(self, record: dict[str, Any]) -> bool:
        kind = record.get("type")
        if kind in self.types:
            return True
        return kind == "syscall" and record.get("syscall") in self.syscalls

    def describe(self) -> str:
        return ",".join(sorted(self.types) + sorted(self.syscalls))

    @property
    def whole_types(self) -> tuple[str, ...]:
        """The tracer's record types the audit log keeps every record of: the kernel counts
        records per type, so these are accounted for exactly (TraceAccount)."""
        return tuple(t for t in TRACE_TYPES if t in self.types)

    @property
    def drop_types(self) -> tuple[str, ...]:
        """The tracer's record types whose ring-full drops may hold a record the log keeps
        (``syscall`` also when only syscall names are kept: the kernel counts drops per
        type, not per call)."""
        return tuple(t for t in TRACE_TYPES
                     if t in self.types or (t == "syscall" and self.syscalls))


@dataclass
class LoadAccount:
    """One policy load's denials as the audit log holds them: records written, records counted
    in gap records (all causes), and those of them lost to a full ring buffer. The kernel
    counted ``emitted`` denials since that load; once nothing is in flight, ``written +
    gapped == emitted``, or the difference becomes a gap record."""

    identity: dict[str, Any] = field(default_factory=dict)
    written: int = 0
    gapped: int = 0
    ring_full: int = 0


@dataclass
class TraceAccount:
    """One tracer load's records of the kinds the audit log keeps, as the log holds them.

    The kernel counts the records it emits and drops per type since the load; ``base_*`` are
    those counts when the log began keeping these types of this load (serve attached to it,
    or ``--events`` changed). For each type of ``types``, once nothing is in flight,
    ``emitted - base_emitted == written + gapped`` or the difference becomes a gap record; for
    each of ``drop_types`` the kernel's new drops become ring-full gap records as counted."""

    identity: dict[str, Any]
    types: tuple[str, ...]
    drop_types: tuple[str, ...]
    base_emitted: dict[str, int]
    base_dropped: dict[str, int]
    written: dict[str, int] = field(default_factory=dict)
    gapped: dict[str, int] = field(default_factory=dict)
    ring_full: dict[str, int] = field(default_factory=dict)

    def as_detail(self) -> dict[str, Any]:
        """What the lifecycle record that starts the account holds (read back at start)."""
        return {"types": list(self.types), "drop_types": list(self.drop_types),
                "emitted": dict(self.base_emitted), "dropped": dict(self.base_dropped)}

    @classmethod
    def from_detail(cls, identity: dict[str, Any], detail: dict[str, Any]) -> TraceAccount:
        return cls(identity, tuple(detail.get("types", ())), tuple(detail.get("drop_types", ())),
                   dict(detail.get("emitted", {})), dict(detail.get("dropped", {})))

    def count_gap(self, kind: str, lost: int, ring_full: bool) -> None:
        if kind in self.types:
            self.gapped[kind] = self.gapped.get(kind, 0) + lost
        if ring_full:
            self.ring_full[kind] = self.ring_full.get(kind, 0) + lost


class ServeOutput(Output):
    """The Output of serve's Streamer (JSON mode)."""

    def __init__(self, audit: AuditLog | None, json_log: RotatingJsonLog | None,
                 events: EventKinds) -> None:
        self.fd = -1
        self._file = None
        self.name = str(json_log.path) if json_log is not None else "the audit log"
        self.regular = False
        self.lines = 0
        self.error: OSError | None = None
        self.audit = audit
        self.json_log = json_log
        self.events = events
        self.policy_load: LoadAccount | None = None  # the policy load whose denials come now
        self.trace_load: TraceAccount | None = None  # the tracer load whose records come now
        self._batch_traced: dict[str, int] = {}
        self._batch: list[dict[str, Any]] = []
        self._batch_denials = 0
        self._batch_gapped = [0, 0]

    def write(self, data: bytes | memoryview) -> bool:
        if self.error is not None:
            return False
        if self.json_log is not None and not self.json_log.write(data):
            self.error = self.json_log.error
            self.name = str(self.json_log.path)
            return False
        lines = bytes(data).splitlines()
        self.lines += len(lines)
        if self.audit is not None:
            for line in lines:
                self._keep(json.loads(line))
        return True

    def _keep(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "lost":
            ring = record.get("ring")
            if ring == "events":
                # serve writes the tracer's drops per record type, from the kernel's counters,
                # for the types the log keeps (Serve._account_trace)
                return
            if ring in ("tls_write", "tls_read"):
                # TLS calls the kernel could not queue: a gap when the log keeps what is made
                # of them (tls, http, llm records; steps, opened by LLM responses)
                if self.events.types & {"tls", "http", "llm", "step"}:
                    self._batch.append({"kind": "gap", "what": "TLS records",
                                        "lost": record["dropped"],
                                        "detail": {"cause": RING_FULL, "ring": ring,
                                                   "total_dropped": record["total_dropped"]}})
                return
            detail: dict[str, Any] = {"cause": RING_FULL, "ring": ring,
                                      "total_dropped": record.get("total_dropped")}
            if ring == "denials":
                if self.policy_load is not None:
                    detail["load"] = self.policy_load.identity
                self._batch_gapped[0] += record["dropped"]
                self._batch_gapped[1] += record["dropped"]
            self._batch.append({"kind": "gap", "lost": record["dropped"], "detail": detail,
                                "what": "denials" if ring == "denials" else "trace events"})
        elif kind == "phase":  # `swatch policy phase`: the policy's rules switched
            self._batch.append({"kind": "lifecycle", "component": "policy", "action": "phase",
                                "detail": record})
        elif kind == "denied" or self.events.wants(record):
            self._batch.append({"kind": "event", "event": record})
            self._batch_denials += kind == "denied"
            if self.trace_load is not None and kind in self.trace_load.types:
                self._batch_traced[kind] = self._batch_traced.get(kind, 0) + 1

    def add(self, bodies: list[dict[str, Any]]) -> None:
        """Records serve makes itself (lifecycle, gaps it found), in stream order."""
        self._batch.extend(bodies)

    def flush(self) -> None:
        """Append what was kept since the last flush (one write, one fsync); on failure the
        error is kept (``error``) and nothing more is written."""
        batch, self._batch = self._batch, []
        denials, self._batch_denials = self._batch_denials, 0
        gapped, self._batch_gapped = self._batch_gapped, [0, 0]
        traced, self._batch_traced = self._batch_traced, {}
        if not batch or self.audit is None or self.error is not None:
            return
        try:
            self.audit.append_records(batch)
        except OSError as err:
            self.error = err
            self.name = str(self.audit.audit_dir)
            return
        if self.trace_load is not None:
            for kind, n in traced.items():
                self.trace_load.written[kind] = self.trace_load.written.get(kind, 0) + n
        if self.policy_load is not None:
            self.policy_load.written += denials
            self.policy_load.gapped += gapped[0]
            self.policy_load.ring_full += gapped[1]

    def describe_error(self) -> str:
        assert self.error is not None
        return f"cannot write to {self.name}: {self.error.strerror or self.error}"

    def close(self) -> None:
        self.fd = -1
