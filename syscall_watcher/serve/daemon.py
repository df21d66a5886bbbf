"""`swatch serve`: the one long-running consumer of what is pinned.

It attaches to the tracer and the enforcer when they are pinned and lets go when they are
unloaded (checking every FOLLOW_S), so `swatch load` / `swatch unload` / `swatch policy load`
may come and go while it runs; with nothing pinned it waits and says so once. Every ring it
reads (the tracer's events, the policy's denials) is a Source of ONE Streamer, so their records
come out merged in kernel-time order, to the JSON log and to the audit log (sink.py).

The audit log gets the denials, the kinds ``--events`` names, gaps (a full ring buffer, from
the kernel's exact drop counters), and lifecycle records (tracer/policy load and unload).
SIGTERM/SIGINT: stop the kernel emitting, write out everything delivered, fsync, sign a last
checkpoint, exit 0. SIGHUP: reopen the JSON log by name.

Restart without losing or duplicating a denial. The ring's consumer position lives in the
kernel and moves when a record is taken off the ring, before serve writes it: what is in the
ring at a restart was never written (so it is never duplicated), and what a killed serve had
taken but not yet fsynced is gone from the ring. serve therefore keeps, per policy load, what
the audit log holds of it (denial records written, denials counted in gap records; read back
from the log at start) and compares it with the kernel's count of denials emitted since the
load: whenever nothing is in flight (the count stood still for FOLLOW_S and nothing came off
the ring) any difference becomes a gap record, and the ring-full drops that happened while
serve was down become one at once. So every denial the kernel counted is in the log exactly
once or inside a gap record.

The tracer's record types ``--events`` names whole (syscall, exec, fork, exit) are accounted
for the same way, per tracer load and per type (sink.TraceAccount): the kernel counts what it
emits and drops per type, the log's ``load`` (or ``events``) record keeps those counts when
the log began keeping the types, and the difference with what the log holds becomes gap
records (ring-full drops at once, a killed serve's unwritten batch once nothing is in flight
or when serve lets go of the tracer). At SIGTERM serve looks at the pins once more, so an
unload just before it is recorded then, not at the next start.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from syscall_watcher.audit import AuditLog
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.system import require_root
from syscall_watcher.policy import enforcer
from syscall_watcher.sandbox.denials import Merged
from syscall_watcher.serve.jsonlog import RotatingJsonLog
from syscall_watcher.serve.sink import (
    RING_FULL,
    EventKinds,
    LoadAccount,
    ServeOutput,
    TraceAccount,
)
from syscall_watcher.text import from_c
from syscall_watcher.trace import tracer
from syscall_watcher.trace.stream import LIVE_MS, Source, Streamer, TraceSource, tell

FOLLOW_S = 0.5  # how often serve looks for a component loaded or unloaded
IN_FLIGHT = "taken off the ring buffer by a serve that stopped before writing them"


@dataclass
class ServeConfig:
    tracer_pin_dir: Path
    policy_pin_dir: Path
    json_log: RotatingJsonLog | None = None
    metrics: str | None = None
    notices: TextIO | None = None
    audit: AuditLog | None = None
    events: EventKinds = field(default_factory=EventKinds)
    detect_dir: Path | None = None
    tls: Any = None  # --tls (or --agent): TlsSettings; the TLS probes load with the tracer
    agent: bool = False  # --agent: steps


class ServeSignals:
    """SIGTERM and SIGINT ask serve to stop (after draining); SIGHUP to reopen its log."""

    def __init__(self) -> None:
        self.stop: int | None = None
        self.reopen = False
        self._old: dict[int, object] = {}

    def _on_stop(self, signum: int, _frame: object) -> None:
        self.stop = signum

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self.reopen = True

    def __enter__(self) -> ServeSignals:
        self._old = {s: signal.signal(s, self._on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


def _identity(session) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Which load this is (a reload under the same pins is another component)."""
    meta = session.meta()
    return {"loader_pid": int(meta.loader_pid), "load_time_ns": int(meta.load_time_ns)}


@dataclass
class Attached:
    """The component serve is attached to now, and its ring's Source (when serve streams)."""

    session: Any
    identity: dict[str, int]
    source: Source | None = None
    delivered: dict[str, int] = field(default_factory=dict)
    phases: Any = None  # a policy's phase switches (policy.phases.PhaseLines), as records
    tls: TlsPart | None = None  # the tracer's: --tls / --agent


@dataclass
class TlsPart:
    """--tls / --agent next to the tracer serve streams: the TLS probes, their lines and (with
    --agent) the steps, as one line source of the stream."""

    probes: Any
    lines: Any
    steps: Any = None
    summaries: Any = None

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        out = self.lines.take()
        if self.summaries is not None:
            out += self.summaries.take()
        return out

    def take_all(self) -> list[tuple[int, bytes]]:
        return self.lines.take_all()  # the steps' last summaries: after the last records

    def close(self) -> None:
        try:
            if self.steps is not None:
                self.steps.close()
            self.lines.close()
        finally:
            self.probes.close()


@dataclass
class Resume:
    """What the audit log says about the components as it was left: the last tracer and
    policy loads not followed by an unload (their lifecycle details), the policy load's
    account of denials and the tracer load's account of the record types the log keeps."""

    tracer: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    account: LoadAccount | None = None
    trace_account: TraceAccount | None = None
    stopped_cleanly: bool = False  # the serve before this one wrote its stop record


def read_resume(audit: AuditLog) -> Resume:
    from syscall_watcher.audit.verify import iter_records

    out = Resume()
    stopped = False
    for rec in iter_records(audit.audit_dir):
        kind = rec.get("kind")
        if kind == "log" and rec.get("what") in ("start", "stop"):
            if rec["what"] == "start":  # the last one is this serve's own
                out.stopped_cleanly, stopped = stopped, False
            else:
                stopped = True
        elif kind == "lifecycle":
            detail = rec.get("detail") or {}
            comp, action = rec.get("component"), rec.get("action")
            if comp == "tracer":
                out.tracer = detail if action == "load" else None if action == "unload" \
                    else out.tracer
                if action in ("load", "events") and "audit_events" in detail:
                    # from here the log keeps these types of this load (their kernel counts)
                    out.trace_account = TraceAccount.from_detail(_ident(detail),
                                                                 detail["audit_events"])
                elif action in ("load", "unload"):
                    out.trace_account = None
            elif comp == "policy":
                if action == "load":
                    out.policy = detail
                    out.account = LoadAccount(_ident(detail))
                elif action == "unload":
                    out.policy, out.account = None, None
        elif out.trace_account is not None and _count_trace(out.trace_account, rec) \
                or out.account is None:
            continue
        elif kind == "event" and (rec.get("event") or {}).get("type") == "denied":
            out.account.written += 1
        elif kind == "gap" and rec.get("what") == "denials":
            out.account.gapped += int(rec.get("lost", 0))
            if (rec.get("detail") or {}).get("cause") == "ring buffer full":
                out.account.ring_full += int(rec.get("lost", 0))
    return out


def _count_trace(account: TraceAccount, rec: dict[str, Any]) -> bool:
    """Count a record of the tracer's ring in ``account``; False if it is not one."""
    if rec.get("kind") == "event":
        kind = (rec.get("event") or {}).get("type")
        if kind in account.types:
            account.written[kind] = account.written.get(kind, 0) + 1
            return True
    elif rec.get("kind") == "gap":
        detail = rec.get("detail") or {}
        if detail.get("ring") == "events" and detail.get("type") in account.drop_types:
            account.count_gap(detail["type"], int(rec.get("lost", 0)),
                              detail.get("cause") == RING_FULL)
            return True
    return False


def _ident(detail: dict[str, Any]) -> dict[str, int]:
    return {"loader_pid": detail.get("loader_pid"), "load_time_ns": detail.get("load_time_ns")}


class Serve:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.tracer: Attached | None = None
        self.policy: Attached | None = None
        self._next_follow = 0.0
        self._told_waiting = False
        self.output: ServeOutput | None = None
        self.streamer: Streamer | None = None
        if config.json_log is not None or config.audit is not None:
            self.output = ServeOutput(config.audit, config.json_log, config.events)
            self.streamer = Streamer([], self.output, json=True, notices=config.notices)
        self.resume = read_resume(config.audit) if config.audit is not None else Resume()
        self._quiet: tuple[int, int] | None = None  # (emitted, delivered) at the last check
        self._trace_quiet: tuple[Any, ...] | None = None  # the same, of the tracer's ring

    # --- what Prometheus reads (from the HTTP thread)
    def delivered(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in (self.tracer, self.policy):
            if part is not None:
                out.update(part.delivered)
        return out

    # --- the loop
    def run(self, signals: ServeSignals) -> int:
        if self.streamer is not None:
            self.streamer.__enter__()
        try:
            while signals.stop is None and not self._failed():
                if signals.reopen:
                    signals.reopen = False
                    self._reopen()
                if time.monotonic() >= self._next_follow:
                    self._next_follow = time.monotonic() + FOLLOW_S
                    self._follow()
                    self._reconcile()
                    self._account_trace(self.tracer)
                self._pump()
            if signals.stop is not None:
                self._say(f"swatch: serve: {signal.Signals(signals.stop).name}: draining")
        finally:
            try:
                # An unload (or reload) since the last look is recorded now, not at the next
                # start: the pins are looked at once more before letting go.
                gone = self._gone(self.tracer, tracer.PinnedSession, self.config.tracer_pin_dir)
                self._detach_tracer("unloaded" if gone else "released (serve stopping)",
                                    unloaded=gone)
                gone = self._gone(self.policy, enforcer.PinnedPolicy, self.config.policy_pin_dir)
                self._detach_policy("unloaded" if gone else "released (serve stopping)",
                                    unloaded=gone)
            finally:
                if self.streamer is not None:
                    self.streamer.__exit__(None, None, None)
                if self.config.json_log is not None:
                    self.config.json_log.close()
        if self._failed():
            assert self.output is not None
            self._say(f"swatch: {self.output.describe_error()}")
            return 1
        return 0

    def _failed(self) -> bool:
        return self.output is not None and self.output.error is not None

    def _say(self, text: str) -> None:
        tell(self.config.notices, text + "\n")

    def _reopen(self) -> None:
        if self.config.json_log is not None:
            self.config.json_log.reopen()
            self._say(f"swatch: serve: SIGHUP: reopened {self.config.json_log.path}")

    def _pump(self) -> None:
        if self.streamer is None:
            time.sleep(LIVE_MS / 1000)  # metrics only; a signal ends it early
            return
        self.streamer.pump(LIVE_MS, extra=Merged(self.policy.phases if self.policy else None,
                                                 self.tracer.tls if self.tracer else None))
        self._flush()
        self._count()

    def _flush(self) -> None:
        if self.output is not None:
            self.output.flush()
        if self.config.audit is not None and self.output is not None \
                and self.output.error is None:
            try:
                self.config.audit.tick()
            except OSError as err:
                self.output.error = err

    def _count(self) -> None:
        if self.tracer is not None and self.tracer.source is not None \
                and self.tracer.source.consumer is not None:
            consumer = self.tracer.source.consumer
            self.tracer.delivered = {name: consumer.delivered(t)
                                     for t, name in tracer.EV_NAMES.items()}
        if self.policy is not None and self.policy.source is not None \
                and self.policy.source.consumer is not None:
            self.policy.delivered = {"denial": self.policy.source.delivered()}

    def _lifecycle(self, component: str, action: str, detail: dict[str, Any]) -> None:
        """One lifecycle record (load, unload, phase...) in stream order."""
        if self.output is not None and self.config.audit is not None:
            self.output.add([{"kind": "lifecycle", "component": component, "action": action,
                              "detail": detail}])
            self._flush()

    # --- following loads and unloads
    def _follow(self) -> None:
        self._follow_tracer()
        self._follow_policy()
        if self.tracer is None and self.policy is None:
            if not self._told_waiting:
                self._told_waiting = True
                self._say(f"swatch: serve: nothing pinned in {self.config.tracer_pin_dir} or "
                          f"{self.config.policy_pin_dir}; waiting for `swatch load` or "
                          "`swatch policy load`")
        else:
            self._told_waiting = False

    def _follow_tracer(self) -> None:
        pin_dir = self.config.tracer_pin_dir
        loaded = tracer.pin_status(pin_dir) == "loaded"
        if self.tracer is not None:
            if loaded and self._same(self.tracer, tracer.PinnedSession, pin_dir):
                return
            self._detach_tracer("unloaded" if not loaded else "reloaded", unloaded=True)
        if not loaded:
            if self.resume.tracer is not None:  # unloaded while serve was not running
                self._lifecycle("tracer", "unload", {**self.resume.tracer,
                                                     "seen": "at serve's start"})
                self.resume.tracer = None
            return
        try:
            session = tracer.PinnedSession.open(pin_dir)
        except SwatchError:
            return  # unloaded between the check and the open
        attached = Attached(session, _identity(session))
        meta = session.meta()
        label = from_c(libbpf.to_bytes(meta.target_label))
        detail = {"pin_dir": str(pin_dir), "target": label, **attached.identity}
        account = self._trace_account(session, attached.identity)  # before it streams
        wanted = self.config.json_log is not None or self.config.events.traced
        if self.streamer is not None and wanted:
            if meta.mode == tracer.MODE_IDS["cgroup"]:  # container name (+ pod) on events
                from syscall_watcher.trace.watch import label_container_cgroups

                label_container_cgroups(from_c(libbpf.to_bytes(meta.cgroup_path)), label)
            source = TraceSource(session)
            try:
                self.streamer.add(source)
            except SwatchError as err:  # another consumer holds the ring: metrics only
                self._say(f"swatch: serve: tracer in {pin_dir}: {err}; not streaming it")
            else:
                attached.source = source
                if self.config.tls is not None:
                    attached.tls = self._open_tls(session, pin_dir)
        if attached.source is None:
            account = None
        last = self.resume.tracer
        if last is not None and _ident(last) != attached.identity:
            self._lifecycle("tracer", "unload", {**last, "seen": "at serve's start"})
        if last is None or _ident(last) != attached.identity:
            if account is not None:
                detail["audit_events"] = account.as_detail()
            self._lifecycle("tracer", "load", detail)
        elif account is not None and account is not self.resume.trace_account:
            # the log keeps these record types of this load from here: --events changed, or
            # serve starts again after a clean stop
            self._lifecycle("tracer", "events", {**attached.identity,
                                                 "audit_events": account.as_detail()})
        self.resume.tracer = self.resume.trace_account = None
        if self.output is not None:
            self.output.trace_load = account
        self._trace_quiet = None
        self.tracer = attached
        self._say(f"swatch: serve: attached to the tracer in {pin_dir} ({label})")

    def _open_tls(self, session, pin_dir: Path) -> TlsPart | None:  # type: ignore[no-untyped-def]
        """--tls / --agent: the TLS probes loaded next to the tracer, for as long as serve
        streams it; a refusal is one line, and the rest is traced."""
        from syscall_watcher.tls.steps import Steps, StepSummaries
        from syscall_watcher.tls.stream import open_for_session

        steps = Steps(json_lines=True, ids=session) if self.config.agent else None
        try:
            probes, lines = open_for_session(session, self.config.tls, json_lines=True,
                                             color=False, notices=self.config.notices,
                                             view=None, steps=steps)
        except SwatchError as err:
            if steps is not None:
                steps.close()
            self._say(f"swatch: serve: tracer in {pin_dir}: --tls: {err}; tracing the rest")
            return None
        lines.announce()  # what is probed (the stream is open: the kernel emits)
        return TlsPart(probes, lines, steps,
                       StepSummaries(steps) if steps is not None else None)

    def _close_tls(self, part: Attached) -> None:
        """The steps still going summed up (after the tracer's last records), the TLS
        counts said, the probes let go."""
        tls, part.tls = part.tls, None
        if tls is None:
            return
        try:
            if tls.steps is not None and self.streamer is not None:
                self.streamer.write_lines([(time.monotonic_ns(), line)
                                           for line in tls.steps.over(final=True)])
                self._flush()
            for line in tls.lines.summary_lines():
                self._say(f"swatch: serve: {line}")
            if tls.steps is not None:
                for line in tls.steps.lost_lines():
                    self._say(f"swatch: serve: {line}")
        finally:
            tls.close()

    def _trace_account(self, session, identity: dict[str, int]) -> TraceAccount | None:  # type: ignore[no-untyped-def]
        """The account of this tracer load's records the audit log keeps: the one read back
        from the log when it is of this load and these types, else a new one from the
        kernel's counts now (before serve streams)."""
        events = self.config.events
        if self.config.audit is None or not events.drop_types:
            return None
        last = self.resume.trace_account
        # After a clean stop everything the kernel had emitted to serve was settled then; what
        # it emitted since went to another consumer (serve's stop switched the ring off).
        if last is not None and last.identity == identity and last.types == events.whole_types \
                and last.drop_types == events.drop_types and not self.resume.stopped_cleanly:
            return last
        counters = session.counters()
        return TraceAccount(identity, events.whole_types, events.drop_types,
                            {t: counters.emitted[t] for t in events.drop_types},
                            {t: counters.dropped[t] for t in events.drop_types})

    def _follow_policy(self) -> None:
        pin_dir = self.config.policy_pin_dir
        loaded = enforcer.policy_status(pin_dir) == "loaded"
        if self.policy is not None:
            if loaded and self._same(self.policy, enforcer.PinnedPolicy, pin_dir):
                return
            self._detach_policy("unloaded" if not loaded else "reloaded", unloaded=True)
        if not loaded:
            if self.resume.policy is not None:
                self._lifecycle("policy", "unload", {**self.resume.policy,
                                                     "seen": "at serve's start"})
                self.resume.policy = self.resume.account = None
            return
        try:
            session = enforcer.PinnedPolicy.open(pin_dir)
        except SwatchError:
            return
        attached = Attached(session, _identity(session))
        detail = {"pin_dir": str(pin_dir), "policy": session.policy_name(),
                  "tiers": session.tiers(), **attached.identity}
        account = self.resume.account
        if account is None or account.identity != attached.identity:
            if self.resume.policy is not None:
                self._lifecycle("policy", "unload", {**self.resume.policy,
                                                     "seen": "at serve's start"})
            self._lifecycle("policy", "load", detail)
            account = LoadAccount(attached.identity)
        self.resume.policy = self.resume.account = None
        if self.streamer is not None:
            from syscall_watcher.policy.denials import DenialSource

            source = DenialSource(session)
            self.streamer.add(source)
            if self.config.audit is not None:
                # Ring-full drops the log has not counted yet (while serve was down) are
                # reported by the next drop check, from the kernel's exact counter.
                source._dropped_seen = account.ring_full
            attached.source = source
            from syscall_watcher.policy.phases import PhaseLines

            # `swatch policy phase` switches from now on (one made while serve was down is
            # not seen: the kernel keeps only the current phase and a sequence number)
            attached.phases = PhaseLines(session, json_lines=True)
        if self.output is not None:
            self.output.policy_load = account
        self._quiet = None
        self.policy = attached
        self._say(f"swatch: serve: attached to policy {session.policy_name()} in {pin_dir}")

    def _account_trace(self, part: Attached | None, final: bool = False) -> None:
        """The tracer's records of the kinds the log keeps that the kernel counted but the
        log does not hold: its new ring-full drops (at once, from the exact per-type drop
        counters) and, once nothing is in flight (or ``final``: the ring no longer emits to
        serve and is drained), what a killed serve had taken off the ring but not written."""
        out = self.output
        if part is None or out is None or out.trace_load is None or self.config.audit is None:
            return
        account = out.trace_load
        counters = part.session.counters()
        delivered = part.source.delivered() if part.source is not None \
            and part.source.consumer is not None else 0
        now = (tuple(counters.emitted[t] for t in account.types), delivered)
        quiet, self._trace_quiet = self._trace_quiet, now
        out.flush()
        gaps = []
        for kind in account.drop_types:
            new = counters.dropped[kind] - account.base_dropped.get(kind, 0) \
                - account.ring_full.get(kind, 0)
            if new > 0:
                gaps.append((kind, new, {"cause": RING_FULL,
                                         "total_dropped": counters.dropped[kind]}))
        missing = {}
        if final or quiet == now:
            for kind in account.types:
                dropped = sum(n for k, n, _ in gaps if k == kind)
                missing[kind] = (counters.emitted[kind] - account.base_emitted.get(kind, 0)
                                 - account.written.get(kind, 0)
                                 - account.gapped.get(kind, 0) - dropped)
                if missing[kind] > 0:
                    gaps.append((kind, missing[kind], {"cause": IN_FLIGHT}))
        for kind, lost, detail in gaps:
            what = f"{kind} events"
            if kind == "syscall" and kind not in account.types:
                what = "syscall events (of any system call)"
            out.add([{"kind": "gap", "what": what, "lost": lost,
                      "detail": {**detail, "ring": "events", "type": kind,
                                 "load": account.identity}}])
            account.count_gap(kind, lost, detail["cause"] == RING_FULL)
            if detail["cause"] == IN_FLIGHT:
                self._say(f"swatch: serve: {lost} {kind} events were {IN_FLIGHT}; logged as "
                          "a gap")
        if gaps:
            self._flush()
        for kind, n in missing.items():
            if n < 0:
                self._say(f"swatch: serve: the audit log holds {-n} more {kind} records of "
                          f"tracer load {account.identity} than the kernel counted")

    def _reconcile(self) -> None:
        """Denials the kernel counted that are neither written nor in a gap record, once
        nothing is in flight: a gap record (a killed serve's unwritten batch)."""
        part, out = self.policy, self.output
        if part is None or part.source is None or out is None or out.policy_load is None \
                or self.config.audit is None or self.streamer is None:
            return
        emitted = part.session.counts().emitted
        delivered = part.source.delivered()
        now = (emitted, delivered)
        quiet, self._quiet = self._quiet, now
        if quiet != now:
            return
        self.streamer.check_drops()
        out.flush()
        account = out.policy_load
        missing = emitted - account.written - account.gapped
        if missing > 0:
            out.add([{"kind": "gap", "what": "denials", "lost": missing,
                      "detail": {"cause": IN_FLIGHT, "ring": "denials",
                                 "load": account.identity}}])
            account.gapped += missing
            self._flush()
            self._say(f"swatch: serve: {missing} denials were {IN_FLIGHT}; logged as a gap")
        elif missing < 0:
            self._say(f"swatch: serve: the audit log holds {-missing} more denial records of "
                      f"policy load {account.identity} than the kernel counted")

    @classmethod
    def _gone(cls, part: Attached | None, kind: type, pin_dir: Path) -> bool:
        """Is the load serve is attached to no longer what the pins hold (unloaded, partly
        unloaded or reloaded)?"""
        if part is None:
            return False
        status = tracer.pin_status if kind is tracer.PinnedSession else enforcer.policy_status
        return status(pin_dir) != "loaded" or not cls._same(part, kind, pin_dir)

    @staticmethod
    def _same(part: Attached, cls: type, pin_dir: Path) -> bool:
        """Do the pins still hold the load serve attached to?"""
        try:
            session = cls.open(pin_dir)
        except SwatchError:
            return False
        try:
            return _identity(session) == part.identity
        finally:
            session.close()

    def _detach_tracer(self, why: str, unloaded: bool) -> None:
        part, self.tracer = self.tracer, None
        if part is None:
            return
        try:
            if part.source is not None and self.streamer is not None:
                if part.phases is not None:  # a switch made just before the unload
                    self.streamer.pump(0, extra=part.phases)
                self.streamer.remove(part.source, extra=part.tls)
                self._flush()
                self._close_tls(part)
                # The ring emits no more to serve and is drained: the account is settled.
                self._account_trace(part, final=True)
            if unloaded:
                meta = part.session.meta()
                self._lifecycle("tracer", "unload", {
                    "pin_dir": str(self.config.tracer_pin_dir),
                    "target": from_c(libbpf.to_bytes(meta.target_label)), **part.identity})
        finally:
            if part.tls is not None:  # (not streamed out: a failed write)
                part.tls.close()
            if self.output is not None:
                self.output.trace_load = None
            part.session.close()
        if self.config.json_log is not None:
            self.config.json_log.sync()
        self._say(f"swatch: serve: tracer in {self.config.tracer_pin_dir} {why}; detached")

    def _detach_policy(self, why: str, unloaded: bool) -> None:
        part = self.policy
        if part is None:
            return
        try:
            if part.source is not None and self.streamer is not None:
                self.streamer.remove(part.source)
                self._flush()
                if unloaded:
                    # Nothing emits any more: the kernel's final count settles the account
                    # (the maps are still open through this session).
                    self._reconcile_unloaded(part)
            if unloaded:
                self._lifecycle("policy", "unload", {
                    "pin_dir": str(self.config.policy_pin_dir),
                    "policy": part.session.policy_name(), **part.identity})
        finally:
            self.policy = None
            if self.output is not None:
                self.output.policy_load = None
            part.session.close()
        if self.config.json_log is not None:
            self.config.json_log.sync()
        self._say(f"swatch: serve: policy in {self.config.policy_pin_dir} {why}; detached")

    def _reconcile_unloaded(self, part: Attached) -> None:
        out = self.output
        if out is None or out.policy_load is None or self.config.audit is None:
            return
        account = out.policy_load
        missing = part.session.counts().emitted - account.written - account.gapped
        if missing > 0:
            out.add([{"kind": "gap", "what": "denials", "lost": missing,
                      "detail": {"cause": IN_FLIGHT, "ring": "denials",
                                 "load": account.identity}}])
            account.gapped += missing
            self._flush()


@dataclass
class AuditOptions:
    """``--audit-dir`` and its checkpoint cadence; the log is opened by ``serve()``."""

    audit_dir: Path
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0


def serve(config: ServeConfig, audit: AuditOptions | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit status (0, or 1 if a log could not be written).
    The metrics port is bound first, then the audit log opened (refused when it does not
    verify), so a bad start leaves nothing behind."""
    require_root()
    server = None
    holder: list[Serve] = []
    if config.metrics is not None:
        from syscall_watcher.serve.metrics import KernelCollector, start_server

        collector = KernelCollector(
            config.tracer_pin_dir, config.policy_pin_dir,
            delivered=lambda: holder[0].delivered() if holder else {},
            detect_dir=config.detect_dir)
        server, _thread = start_server(config.metrics, collector)
    try:
        if audit is not None:
            config.audit = AuditLog.open(audit.audit_dir,
                                         checkpoint_every=audit.checkpoint_every,
                                         checkpoint_seconds=audit.checkpoint_seconds)
            key = "created" if config.audit.key_created else "loaded"
            tell(config.notices, f"swatch: serve: audit log {audit.audit_dir} (next seq "
                                 f"{config.audit.next_seq}; signing key {key}, public key "
                                 f"{audit.audit_dir / 'audit.pub'}; events "
                                 f"{config.events.describe()})\n")
            if config.audit.key_created:  # keep a copy of it away from this machine
                tell(config.notices, "swatch: serve: the audit log's new public key:\n"
                                     + config.audit.public_key_pem)
        try:
            if server is not None:
                host, port = server.server_address[:2]
                tell(config.notices, f"swatch: serve: metrics on http://{host}:{port}/metrics\n")
            instance = Serve(config)
            holder.append(instance)
            with ServeSignals() as signals:
                code = instance.run(signals)
        finally:
            closed = _close_audit(config)
        return code if closed else 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _close_audit(config: ServeConfig) -> bool:
    """A stop record and a last checkpoint; False (and one line) if they cannot be written."""
    if config.audit is None:
        return True
    try:
        config.audit.close()
    except OSError as err:
        tell(config.notices, f"swatch: cannot write to {config.audit.audit_dir}: "
                             f"{err.strerror or err}\n")
        return False
    return True
