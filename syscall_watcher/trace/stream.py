"""Attach to ring buffers — a tracer's events, a policy's denials — and write their records,
merged in time order, as human lines or JSON lines (one C formatter for every record type; the JSON
Schema of every record is data/schema/records.schema.json).

Live: a poll waits at most LIVE_MS, then takes whatever is queued (woken or not), and every
batch is written out at once, so a quiet stream's event is out within about LIVE_MS while a
busy one is still read in large batches. Lossless: the output is written whole lines at a time
straight to its file descriptor (nothing sits in a buffer a signal could lose), a failed write
ends writing once and says so, and SIGINT, SIGTERM and SIGHUP all stop a stream the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO, Protocol, TextIO

from syscall_watcher.kernel import libbpf, syscalls, uring
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.libbpf import RingConsumer, lib
from syscall_watcher.trace.output import STOP_SIGNALS, Output, StopSignals, tell  # noqa: F401
from syscall_watcher.trace.tracer import Session
from syscall_watcher.trace.view import TraceView

DROP_CHECK_S = 0.5
# The longest a poll waits before it takes what is queued: records sent without a wakeup
# (below the tracer's wakeup_bytes) reach the output within about this much.
LIVE_MS = 50
FOLD_MAX_AGE_NS = 100_000_000  # a held EXEC line goes out 100 ms after the exec at the latest


def clock_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC now: what turns a record's ktime
    (bpf_ktime_get_ns(), monotonic) into wall-clock ns since the epoch (JSON ``time_ns``)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
        time.CLOCK_MONOTONIC)


def setup_formatter() -> None:
    """Give the C formatter its syscall and errno names and the clock, once per stream."""
    sc, errs = syscalls.format_tables()
    libbpf.set_format_tables(sc, errs, uring.format_table())
    libbpf.set_format_clock(clock_offset_ns(), time.localtime().tm_gmtoff)


def lost_record(ring: str, dropped: int, total: int) -> bytes:
    """The JSON line that says a ring lost records (schema: ``lost``): it has the common
    ``type`` and ``time_ns`` (when swatch saw the loss), no process fields."""
    return (f'{{"type":"lost","time_ns":{time.time_ns()},"ring":"{ring}","dropped":{dropped},'
            f'"total_dropped":{total}}}\n').encode()


class Source:
    """One ring buffer a stream reads (the tracer's events, a policy's denials): how to attach
    to it, stop it emitting, and what its kernel counters say was lost. A Streamer merges the
    records of its sources in time order and writes them through the one C formatter."""

    ring = ""  # the JSON `lost` record's "ring"

    def __init__(self) -> None:
        self.consumer: RingConsumer | None = None
        self._dropped_seen = 0
        self.dropped_during = 0

    def attach(self) -> RingConsumer:
        raise NotImplementedError

    def stop_emitting(self) -> None:
        """Tell the kernel side nobody reads any more (if it cares)."""

    def dropped(self) -> int:
        """Records the kernel could not queue (ring full), since load."""
        raise NotImplementedError

    def drop_notice(self, new: int, total: int) -> str:
        raise NotImplementedError

    def notices(self) -> list[str]:
        """Other things the kernel could not record since the last call (one line each)."""
        return []

    def delivered(self) -> int:
        assert self.consumer is not None
        return sum(self.consumer.delivered(t) for t in range(1, lib.SW_REC_TYPES))

    def open(self) -> None:
        self._dropped_seen = self.dropped()  # before the kernel emits for us
        self.consumer = self.attach()

    def new_drops(self) -> tuple[int, int]:
        """(dropped since the last call, dropped since load)."""
        total = self.dropped()
        new = total - self._dropped_seen
        if new > 0:
            self._dropped_seen = total
            self.dropped_during += new
        return max(new, 0), total

    def close(self) -> None:
        try:
            self.stop_emitting()
        finally:
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None


class TraceSource(Source):
    """A tracer's event ring: one consumer at a time; the kernel emits only while it streams."""

    ring = "events"

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self._streaming = False
        self._lost_seen = (0, 0, 0)

    def attach(self) -> RingConsumer:
        streaming, consumer = self.session.state()
        if streaming and consumer and consumer != os.getpid() and os.path.isdir(f"/proc/{consumer}"):
            raise SwatchError(f"another `swatch watch` (pid {consumer}) is already attached")
        ring = RingConsumer(self.session.maps["events"])
        # Never trace our own writes, whatever the target (even a tree we are part of): the
        # mark is in our task-local storage and goes when we exit.
        self.session.exclude(os.getpid())
        c = self.session.counters()
        self._lost_seen = (c.pid_filter_full, c.pid_stats_full, c.untracked)
        self.session.set_streaming(True, os.getpid())
        self._streaming = True
        return ring

    def stop_emitting(self) -> None:
        if self._streaming:
            self._streaming = False
            self.session.set_streaming(False, 0)

    def delivered(self) -> int:
        assert self.consumer is not None
        return sum(self.consumer.delivered(t) for t in range(1, lib.SW_EV_TYPES))

    def dropped(self) -> int:
        return self.session.counters().total_dropped

    def drop_notice(self, new: int, total: int) -> str:
        return f"swatch: {new} events dropped (ring buffer full); {total} since load\n"

    def notices(self) -> list[str]:
        """A notice line when the kernel could not record a process (maps full, no memory)."""
        counters = self.session.counters()
        now = (counters.pid_filter_full, counters.pid_stats_full, counters.untracked)
        new = [b - a for a, b in zip(self._lost_seen, now)]
        self._lost_seen = now
        out = []
        if new[2] > 0:
            out.append(f"swatch: {new[2]} new processes could not be marked at fork and are "
                       f"NOT traced; {now[2]} since load\n")
        if new[1] > 0:
            out.append(f"swatch: {new[1]} processes not counted per process (pid_done full, "
                       f"--max-pids); {now[1]} since load\n")
        if new[0] > 0:
            out.append(f"swatch: {new[0]} children not listed in pid_filter (full, "
                       f"--max-pids; still traced); {now[0]} since load\n")
        return out


class LineSource(Protocol):
    """Lines made in Python, merged into a stream by kernel time: ``take()`` what is there now,
    ``take_all()`` everything up to now (at the end), as (ktime_ns, line) pairs — or
    (ktime_ns, line, then) where ``then()`` runs when the line is written and returns more
    bytes to write after it (Streamer._emit_line)."""

    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]: ...

    def take_all(self) -> list[tuple[int, bytes]]: ...


class Streamer:
    """One consumer of one or more rings (a tracer's events, a policy's denials), merged in
    kernel-time order into one output. Use as a context manager."""

    def __init__(self, sources: Session | Source | Sequence[Source], out: Output | BinaryIO,
                 json: bool = False, color: bool = False, notices: TextIO | None = None,
                 view: TraceView | None = None) -> None:
        if isinstance(sources, Source):
            sources = [sources]
        elif not isinstance(sources, Sequence):
            sources = [TraceSource(sources)]
        self.sources: list[Source] = list(sources)
        self.view = view if view is not None else TraceView()
        self.out = out if isinstance(out, Output) else Output(out)
        self.mode = lib.SW_OUT_JSON if json else lib.SW_OUT_HUMAN
        self.color = color
        self.notices = notices
        self._next_drop_check = 0.0
        self.told_failure = False

    def __enter__(self) -> Streamer:
        setup_formatter()
        self.view.apply()
        try:
            for source in self.sources:
                source.open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        for source in self.sources:
            source.close()

    def add(self, source: Source) -> None:
        """Attach one more source to a running stream (serve follows loads while it runs)."""
        source.open()
        self.sources.append(source)

    def remove(self, source: Source, extra: LineSource | None = None) -> None:
        """Stop one source emitting, write out everything it still holds (and what ``extra``
        still has: lines made from it), say what it lost, and let go of it; the other sources
        go on."""
        try:
            source.stop_emitting()
            assert source.consumer is not None
            lines = extra.take_all() if extra is not None else []
            while source.consumer.drain() or lines:
                self._write(lines)
                lines = []
            self._check_source(source)
        finally:
            self.sources.remove(source)
            source.close()

    def _stop_emitting(self) -> None:
        for source in self.sources:
            source.stop_emitting()

    def _traced(self) -> list[Source]:
        return [s for s in self.sources if s.ring == "events"]

    @property
    def delivered(self) -> int:
        """Trace events delivered to us (the `events delivered=` of the end line)."""
        return sum(s.delivered() for s in self._traced())

    @property
    def dropped_during(self) -> int:
        """Trace events the kernel dropped while we streamed."""
        return sum(s.dropped_during for s in self._traced())

    @property
    def written(self) -> int:
        """Lines written to the output (records, and `lost` lines in JSON mode)."""
        return self.out.lines

    def pump(self, timeout_ms: int = LIVE_MS, extra: LineSource | None = None) -> int:
        """Wait up to timeout_ms for records (on the first source; the others are taken as
        they are), write them out in time order; returns how many. ``extra``: lines made in
        Python (a run's OOM kills, seccomp denials), merged in by their ktime."""
        n = 0
        if len(self.sources) == 1:
            assert self.sources[0].consumer is not None
            n = self.sources[0].consumer.poll(timeout_ms)
        elif self.sources:
            # Wait on the first ring, then take the others before it: a record of the first
            # that precedes (in one thread's order) a record taken from another is then in
            # this round too, so the merge by kernel time never writes it after that record.
            first = self.sources[0].consumer
            assert first is not None
            first.wait(timeout_ms)
            for source in self.sources[1:] + self.sources[:1]:
                assert source.consumer is not None
                n += source.consumer.poll(0)
        if not self.sources and timeout_ms:
            time.sleep(timeout_ms / 1000)  # nothing attached (yet): a signal ends it early
        lines = extra.take() if extra is not None else []
        if n or lines:
            self._write(lines)
        if self.view.fold_startup and self.sources:
            self._release_held(FOLD_MAX_AGE_NS)
        now = time.monotonic()
        if now >= self._next_drop_check:
            self._next_drop_check = now + DROP_CHECK_S
            self.check_drops()
        return n

    def finish(self, extra: LineSource | None = None) -> None:
        """Stop the kernel emitting, then write out everything still queued and report any
        final drops: every record delivered to us is written (unless the output failed)."""
        self._stop_emitting()
        lines = extra.take_all() if extra is not None else []
        while True:
            n = 0
            for source in self.sources:
                assert source.consumer is not None
                n += source.consumer.drain()
            if not n and not lines:
                break
            self._write(lines)
            lines = []
        if self.view.fold_startup and self.sources:
            self._release_held(0)
        self.check_drops()

    def _write(self, lines: list[tuple[int, bytes]] | None = None) -> None:
        """The sources' current batches, merged by kernel time: the source whose next record
        is oldest is written up to the next record of any other (or of ``lines``, (ktime,
        line) pairs made in Python)."""
        extra = sorted(lines or [], key=lambda x: x[0])
        live = [s.consumer for s in self.sources if s.consumer is not None and s.consumer.pending]
        while live:
            live.sort(key=lambda c: c.next_ktime())
            first = live[0]
            while extra and extra[0][0] <= first.next_ktime():
                self._emit_line(extra.pop(0))
            untils = ([live[1].next_ktime()] if len(live) > 1 else []) + (
                [extra[0][0]] if extra else [])
            until = min(untils) if untils else None
            before = first.position
            for chunk in first.format(self.mode, self.color, until_ns=until):
                self._emit(chunk)
            if first.position == before:  # a malformed record: the formatter stops there
                live.remove(first)
            live = [c for c in live if c.pending]
        for item in extra:
            self._emit_line(item)

    def write_lines(self, lines: list[tuple[int, bytes]]) -> None:
        """Lines made in Python, written now (merged with whatever the sources hold)."""
        if lines:
            self._write(lines)

    def _emit_line(self, item: tuple[int, bytes] | tuple[int, bytes, Callable[[], bytes]]) -> None:
        """A line made in Python; a third member is called when the line goes out, in time
        order with the records around it (--agent opens and closes steps there), and what it
        returns goes out right after."""
        self._emit(item[1])
        if len(item) > 2:
            more = item[2]()  # type: ignore[misc]
            if more:
                self._emit(more)

    def _emit(self, data: bytes | memoryview) -> None:
        if self.out.write(data) or self.told_failure:
            return
        # The output is gone or full: stop the kernel sending what nobody can write.
        self.told_failure = True
        self._stop_emitting()
        tell(self.notices, f"swatch: {self.out.describe_error()}; stopped writing after "
                           f"{self.out.lines} lines\n")

    def _release_held(self, max_age_ns: int) -> None:
        """Write the EXEC lines held for start-up folding that are old enough (0: all)."""
        consumer = self.sources[0].consumer
        assert consumer is not None
        chunk = consumer.release_held(max_age_ns, self.color)
        if chunk.nbytes:
            self._emit(chunk)

    def check_drops(self) -> None:
        """Say what each source's kernel side could not queue or record since the last check:
        a notice line, and in JSON a `lost` record in the stream."""
        for source in self.sources:
            self._check_source(source)

    def _check_source(self, source: Source) -> None:
        for line in source.notices():
            tell(self.notices, line)
        new, total = source.new_drops()
        if new:
            if self.mode == lib.SW_OUT_JSON:
                self._emit(lost_record(source.ring, new, total))
            tell(self.notices, source.drop_notice(new, total))
