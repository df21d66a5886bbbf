"""`swatch serve`: the one long-running consumer of what is pinned.

It attaches to the tracer and the enforcer when they are pinned and lets go when they are
unloaded (checking every FOLLOW_S), so `swatch load` / `swatch unload` / `swatch policy load`
may come and go while it runs; with nothing pinned it waits and says so once. While attached
and given a JSON log, it takes every record off their ring buffers and appends them as JSON
lines (denials merged in time order, a "lost" line where the kernel dropped records).
SIGTERM/SIGINT: stop the kernel emitting, write out everything delivered, fsync, exit 0.
SIGHUP: reopen the log by name. A restart neither repeats nor skips a record it had taken: the
ring's consumer position lives in the kernel, and the log is only ever appended to.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.system import require_root
from syscall_watcher.policy import enforcer
from syscall_watcher.serve.jsonlog import RotatingJsonLog
from syscall_watcher.text import from_c
from syscall_watcher.trace import tracer
from syscall_watcher.trace.stream import LIVE_MS, Streamer, tell

FOLLOW_S = 0.5  # how often serve looks for a component loaded or unloaded


@dataclass
class ServeConfig:
    tracer_pin_dir: Path
    policy_pin_dir: Path
    json_log: RotatingJsonLog | None = None
    metrics: str | None = None
    notices: TextIO | None = None


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


def _identity(session) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Which load this is (a reload under the same pins is another component)."""
    meta = session.meta()
    return int(meta.loader_pid), int(meta.load_time_ns)


@dataclass
class Attached:
    """The component serve is attached to now, and its ring's reader (with a JSON log)."""

    session: object
    identity: tuple[int, int]
    reader: object = None
    delivered: dict[str, int] = field(default_factory=dict)


class Serve:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.tracer: Attached | None = None
        self.policy: Attached | None = None
        self._next_follow = 0.0
        self._told_waiting = False

    # --- what Prometheus reads (from the HTTP thread)
    def delivered(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in (self.tracer, self.policy):
            if part is not None:
                out.update(part.delivered)
        return out

    # --- the loop
    def run(self, signals: ServeSignals) -> int:
        try:
            while signals.stop is None:
                if signals.reopen:
                    signals.reopen = False
                    self._reopen()
                if time.monotonic() >= self._next_follow:
                    self._next_follow = time.monotonic() + FOLLOW_S
                    self._follow()
                self._pump()
            self._say(f"swatch: serve: {signal.Signals(signals.stop).name}: draining")
        finally:
            self._detach_tracer("released (serve stopping)")
            self._detach_policy("released (serve stopping)")
            if self.config.json_log is not None:
                self.config.json_log.close()
        log = self.config.json_log
        if log is not None and log.error is not None:
            self._say(f"swatch: {log.describe_error()}")
            return 1
        return 0

    def _say(self, text: str) -> None:
        tell(self.config.notices, text + "\n")

    def _reopen(self) -> None:
        if self.config.json_log is not None:
            self.config.json_log.reopen()
            self._say(f"swatch: serve: SIGHUP: reopened {self.config.json_log.path}")

    def _pump(self) -> None:
        t = self.tracer.reader if self.tracer is not None else None
        d = self.policy.reader if self.policy is not None else None
        if isinstance(t, Streamer):
            t.pump(LIVE_MS)
            self._count_tracer(t)
        if isinstance(d, Streamer):
            d.pump(0 if isinstance(t, Streamer) else LIVE_MS)
        elif not isinstance(t, Streamer):
            time.sleep(LIVE_MS / 1000)  # a signal ends it early (its handler sets a flag)
        if isinstance(d, Streamer):
            self.policy.delivered = {  # type: ignore[union-attr]
                "denial": sum(s.delivered() for s in d.sources)}

    def _count_tracer(self, streamer: Streamer) -> None:
        consumer = streamer.sources[0].consumer
        if consumer is not None and self.tracer is not None:
            self.tracer.delivered = {name: consumer.delivered(t)
                                     for t, name in tracer.EV_NAMES.items()}

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
            self._detach_tracer("unloaded" if not loaded else "reloaded")
        if not loaded:
            return
        try:
            session = tracer.PinnedSession.open(pin_dir)
        except SwatchError:
            return  # unloaded between the check and the open
        attached = Attached(session, _identity(session))
        if self.config.json_log is not None:
            streamer = Streamer(session, self.config.json_log, json=True,
                                notices=self.config.notices)
            try:
                streamer.__enter__()
            except SwatchError as err:  # another consumer holds the ring: metrics only
                self._say(f"swatch: serve: tracer in {pin_dir}: {err}; not streaming it")
            else:
                attached.reader = streamer
        self.tracer = attached
        meta = attached.session.meta()  # type: ignore[attr-defined]
        label = from_c(libbpf.to_bytes(meta.target_label))
        self._say(f"swatch: serve: attached to the tracer in {pin_dir} ({label})")

    def _follow_policy(self) -> None:
        pin_dir = self.config.policy_pin_dir
        loaded = enforcer.policy_status(pin_dir) == "loaded"
        if self.policy is not None:
            if loaded and self._same(self.policy, enforcer.PinnedPolicy, pin_dir):
                return
            self._detach_policy("unloaded" if not loaded else "reloaded")
        if not loaded:
            return
        try:
            session = enforcer.PinnedPolicy.open(pin_dir)
        except SwatchError:
            return
        attached = Attached(session, _identity(session))
        if self.config.json_log is not None:
            from syscall_watcher.policy.denials import DenialSource

            streamer = Streamer(DenialSource(session), self.config.json_log, json=True,
                                notices=self.config.notices)
            streamer.__enter__()
            attached.reader = streamer
        self.policy = attached
        self._say(f"swatch: serve: attached to policy {session.policy_name()} in {pin_dir}")

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

    def _detach_tracer(self, why: str) -> None:
        part, self.tracer = self.tracer, None
        if part is None:
            return
        reader = part.reader
        try:
            if isinstance(reader, Streamer):
                reader.finish()
                reader.__exit__(None, None, None)
        finally:
            part.session.close()  # type: ignore[attr-defined]
        if self.config.json_log is not None:
            self.config.json_log.sync()
        self._say(f"swatch: serve: tracer in {self.config.tracer_pin_dir} {why}; detached")

    def _detach_policy(self, why: str) -> None:
        part, self.policy = self.policy, None
        if part is None:
            return
        try:
            if isinstance(part.reader, Streamer):
                part.reader.finish()
                part.reader.__exit__(None, None, None)
        finally:
            part.session.close()  # type: ignore[attr-defined]
        if self.config.json_log is not None:
            self.config.json_log.sync()
        self._say(f"swatch: serve: policy in {self.config.policy_pin_dir} {why}; detached")


def serve(config: ServeConfig) -> int:
    """Run until SIGTERM/SIGINT; the exit status (0, or 1 if the log could not be written)."""
    require_root()
    server = None
    instance = Serve(config)
    if config.metrics is not None:
        from syscall_watcher.serve.metrics import KernelCollector, start_server

        collector = KernelCollector(config.tracer_pin_dir, config.policy_pin_dir,
                                    delivered=instance.delivered)
        server, _thread = start_server(config.metrics, collector)
        host, port = server.server_address[:2]
        tell(config.notices, f"swatch: serve: metrics on http://{host}:{port}/metrics\n")
    try:
        with ServeSignals() as signals:
            return instance.run(signals)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
