"""`serve --metrics ADDR`: /metrics in the Prometheus text format (prometheus_client).

A custom Collector reads the kernel's own counters at scrape time, from the pinned maps (the
same reads `swatch summary` and `swatch policy summary` make), so a scrape is exact however
many events the ring dropped and needs nothing from the event stream. What only serve knows
(events delivered to it) comes from the Serve loop. Every name starts with ``swatch_`` and
carries its unit (Prometheus naming conventions).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel import libbpf, syscalls
from syscall_watcher.kernel.libbpf import lib
from syscall_watcher.policy import enforcer
from syscall_watcher.text import from_c
from syscall_watcher.trace import tracer

# The kernel's latency histogram: bucket b counts calls that took [2^b, 2^(b+1)) ns, so its
# cumulative counts are Prometheus buckets with upper bound le = 2^(b+1) ns (in seconds).
BUCKET_BOUNDS_S = [(1 << (b + 1)) / 1e9 for b in range(lib.SW_HIST_BUCKETS)]


def histogram_buckets(hist: list[int]) -> list[tuple[str, float]]:
    """The kernel's log2 histogram as Prometheus (le, cumulative count) pairs, +Inf last."""
    out, seen = [], 0
    for bound, n in zip(BUCKET_BOUNDS_S, hist):
        seen += n
        out.append((repr(bound), float(seen)))
    out.append(("+Inf", float(seen)))
    return out


def _cstr(cdata) -> str:  # type: ignore[no-untyped-def]
    return from_c(libbpf.to_bytes(cdata))


class KernelCollector(Collector):
    """swatch_* from the pinned tracer and enforcer, read when Prometheus scrapes.

    ``delivered`` returns serve's own per-type delivered counts (events it took off the
    rings since it attached to the component now loaded)."""

    def __init__(self, tracer_pin_dir: Path, policy_pin_dir: Path,
                 delivered: Callable[[], dict[str, int]] = dict,
                 detect_dir: Path | None = None) -> None:
        self.tracer_pin_dir = tracer_pin_dir
        self.policy_pin_dir = policy_pin_dir
        self.delivered = delivered
        self.detect_dir = detect_dir
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only; never read the kernel at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            emitted = CounterMetricFamily("swatch_events_emitted", "Records the kernel handed "
                                          "to a ring buffer, by record type", labels=["type"])
            dropped = CounterMetricFamily("swatch_events_dropped", "Records the kernel could "
                                          "not put in a full ring buffer, by record type",
                                          labels=["type"])
            yield from self._tracer_metrics(emitted, dropped)
            yield from self._policy_metrics(emitted, dropped)
            yield emitted
            yield dropped
            delivered = CounterMetricFamily(
                "swatch_events_delivered", "Records serve took off a ring buffer since it "
                "attached to the component now loaded, by record type", labels=["type"])
            for kind, n in sorted(self.delivered().items()):
                delivered.add_metric([kind], n)
            yield delivered
            if self.detect_dir is not None:
                yield from _detect_metrics(self.detect_dir)

    def _tracer_metrics(self, emitted: CounterMetricFamily,
                        dropped: CounterMetricFamily) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("swatch_tracer_loaded", "1 while a tracer is pinned",
                                   labels=["target"])
        try:  # open checks that it is loaded (one line why not)
            session = tracer.PinnedSession.open(self.tracer_pin_dir)
        except SwatchError:
            yield loaded
            return
        try:
            target = _cstr(session.meta().target_label)
            loaded.add_metric([target], 1)
            yield loaded
            yield from _syscall_metrics(session.call_stats(), target)
            counters = session.counters()
            for kind in sorted(counters.emitted):
                emitted.add_metric([kind], counters.emitted[kind])
                dropped.add_metric([kind], counters.dropped[kind])
            untracked = CounterMetricFamily(
                "swatch_tracer_untracked_processes", "Processes the tracer could not mark at "
                "fork (out of memory) and does not trace")
            untracked.add_metric([], counters.untracked)
            yield untracked
        finally:
            session.close()

    def _policy_metrics(self, emitted: CounterMetricFamily,
                        dropped: CounterMetricFamily) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("swatch_policy_loaded", "1 while a policy is pinned",
                                   labels=["policy"])
        denials = CounterMetricFamily("swatch_denials", "Operations the policy denied (or "
                                      "would have, audit-only), by operation and the tier "
                                      "that held it", labels=["operation", "tier"])
        try:
            session = enforcer.PinnedPolicy.open(self.policy_pin_dir)
        except SwatchError:
            session = None
        if session is not None:
            try:
                loaded.add_metric([session.policy_name()], 1)
                tiers = session.tiers()
                counts = session.counts()
                for op, n in counts.by_op.items():
                    if op in tiers:
                        denials.add_metric([op, tiers[op]], n)
                emitted.add_metric(["denial"], counts.emitted)
                dropped.add_metric(["denial"], counts.dropped)
            finally:
                session.close()
        yield loaded
        yield denials


def _detect_metrics(directory: Path) -> Iterator[Metric]:
    """The last score `swatch detect` published per target (scores.py)."""
    from syscall_watcher.serve.scores import read_scores

    scores, bad = read_scores(directory)
    score = GaugeMetricFamily("swatch_detect_score", "The last anomaly score swatch detect "
                              "published for the target", labels=["target"])
    when = GaugeMetricFamily("swatch_detect_score_timestamp_seconds", "When that score was "
                             "published (seconds since the epoch)", labels=["target"])
    for target, (value, time_ns) in sorted(scores.items()):
        score.add_metric([target], value)
        when.add_metric([target], time_ns / 1e9)
    unreadable = GaugeMetricFamily("swatch_detect_score_unreadable", "Files in the detect "
                                   "directory that are not a published score")
    unreadable.add_metric([], bad)
    yield from (score, when, unreadable)


def _syscall_metrics(stats: dict, target: str) -> Iterator[Metric]:  # type: ignore[type-arg]
    names = syscalls.names()
    labels = ["syscall", "target"]
    calls = CounterMetricFamily("swatch_syscalls", "System calls the target made", labels=labels)
    errors = CounterMetricFamily("swatch_syscall_errors", "System calls that returned an "
                                 "error", labels=labels)
    bytes_in = CounterMetricFamily("swatch_syscall_read_bytes", "Bytes system calls "
                                   "brought in (read, recv...)", labels=labels)
    bytes_out = CounterMetricFamily("swatch_syscall_written_bytes", "Bytes system calls sent "
                                    "out (write, send...)", labels=labels)
    latency = HistogramMetricFamily("swatch_syscall_duration_seconds", "Time from entry to "
                                    "exit, in the kernel's log2 buckets", labels=labels)
    for nr, s in sorted(stats.items(), key=lambda kv: str(kv[0]) if isinstance(kv[0], str)
                        else f"{kv[0]:09d}"):  # syscalls by number, then io_uring ops
        key = [nr if isinstance(nr, str) else names.get(nr, f"nr{nr}"), target]
        calls.add_metric(key, s["count"])
        errors.add_metric(key, s["errors"])
        bytes_in.add_metric(key, s["bytes_in"])
        bytes_out.add_metric(key, s["bytes_out"])
        if s["hist"] is not None:  # None: a --no-latency tracer, latency not measured
            latency.add_metric(key, histogram_buckets(s["hist"]), s["total_ns"] / 1e9)
    yield from (calls, errors, bytes_in, bytes_out, latency)


def registry(collector: KernelCollector) -> CollectorRegistry:
    """The kernel's counters and swatch's own CPU and memory
    (swatch_process_cpu_seconds_total, swatch_process_resident_memory_bytes, ...)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessCollector(namespace="swatch", pid=lambda: os.getpid(), registry=reg)
    return reg


def parse_address(value: str) -> tuple[str, int]:
    """--metrics HOST:PORT (or PORT alone: 127.0.0.1); [::1]:PORT for IPv6."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise SwatchError(f"--metrics {value}: give HOST:PORT with a port from 0 to 65535")
    return host, n


def start_server(address: str, collector: KernelCollector):  # type: ignore[no-untyped-def]
    """Serve /metrics from a thread; one line if the address cannot be bound."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry(collector))
    except OSError as err:
        raise SwatchError(f"--metrics {address}: cannot listen: "
                          f"{err.strerror or err}") from None
    return server, thread
