"""Where detect's counters come from: a tracer detect loads for the window (stats only: no
events, no ring-buffer consumer), or the tracer `swatch load` pinned. Either way the counters
are the tracer's own maps (bpf/watcher.bpf.c); detect adds no program of its own."""

from __future__ import annotations

from pathlib import Path

from syscall_watcher.detect.observe import CounterMaps
from syscall_watcher.targets.target import Target
from syscall_watcher.trace.tracer import LoadedTracer, PinnedSession


def _maps(session: LoadedTracer | PinnedSession) -> CounterMaps:
    return CounterMaps(session.processes, session.maps["endpoints"],
                       session.maps["files_written"], session.maps["counters"],
                       session.maps["detect"], session.maps["dns_answers"])


def load_stats_tracer(target: Target) -> tuple[LoadedTracer, CounterMaps]:
    """A tracer on ``target`` that only counts (no syscall becomes an event, nothing streams),
    for one detect run; closing it detaches everything."""
    tracer = LoadedTracer.load(target, "default", enabled=frozenset())
    return tracer, _maps(tracer)


def open_pinned(pin_dir: Path) -> tuple[PinnedSession, CounterMaps]:
    session = PinnedSession.open(pin_dir)
    return session, _maps(session)
