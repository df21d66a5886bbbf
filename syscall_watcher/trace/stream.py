"""Attach to a tracer's ring buffer and write its events as human lines or JSON lines.

Live: a poll waits at most LIVE_MS, then takes whatever is queued (woken or not), and every
batch is written out at once, so a quiet stream's event is out within about LIVE_MS while a
busy one is still read in large batches. Lossless: the output is written whole lines at a time
straight to its file descriptor (nothing sits in a buffer a signal could lose), a failed write
ends writing once and says so, and SIGINT, SIGTERM and SIGHUP all stop a stream the same way.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from collections.abc import Iterable
from typing import BinaryIO, TextIO

from syscall_watcher.kernel import libbpf, syscalls
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.libbpf import RingConsumer, lib
from syscall_watcher.trace.tracer import Counters, Session
from syscall_watcher.trace.view import TraceView

DROP_CHECK_S = 0.5
# The longest a poll waits before it takes what is queued: records sent without a wakeup
# (below the tracer's wakeup_bytes) reach the output within about this much.
LIVE_MS = 50
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FOLD_MAX_AGE_NS = 100_000_000  # a held EXEC line goes out 100 ms after the exec at the latest


def _setup_formatter() -> None:
    sc, errs = syscalls.format_tables()
    libbpf.set_format_tables(sc, errs)
    offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
        time.CLOCK_MONOTONIC
    )
    libbpf.set_format_clock(offset, time.localtime().tm_gmtoff)


def tell(stream: TextIO | None, text: str) -> None:
    """Write a notice; if its stream is gone (EPIPE, ENOSPC) drop it, and point the stream's
    fd at /dev/null so no later flush (at exit) fails and changes our exit status."""
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
            stream.flush()
        except (OSError, ValueError):
            pass


class Output:
    """Where a stream's lines go. Writes whole batches straight to the fd (no buffer for a
    signal to lose); the first failure (EPIPE, ENOSPC, EIO...) ends writing for good, and a
    regular file is cut back to its last whole line. ``lines`` counts the lines written."""

    def __init__(self, dest: int | BinaryIO, name: str = "") -> None:
        self._file: BinaryIO | None = None
        if isinstance(dest, int):
            self.fd = dest
        else:
            dest.flush()
            try:
                self.fd = dest.fileno()
            except (OSError, ValueError, AttributeError):
                self.fd = -1  # no fd (an in-memory file): write through the object
                self._file = dest
        self.name = name or getattr(dest, "name", "") or f"fd {self.fd}"
        self.regular = self.fd >= 0 and stat.S_ISREG(os.fstat(self.fd).st_mode)
        self.lines = 0
        self.error: OSError | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def write(self, data: bytes | memoryview) -> bool:
        """Write whole lines; False once writing has failed (the data is not written)."""
        if self.error is not None:
            return False
        view = memoryview(data)
        if self._file is not None:
            self._file.write(view)
            self.lines += libbpf.count_lines(view)
            return True
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as err:
            self.error = err
            self._cut_back(view, done)
            return False
        self.lines += libbpf.count_lines(view)
        return True

    def _cut_back(self, view: memoryview, done: int) -> None:
        """A write failed after ``done`` bytes: keep only the whole lines of them."""
        written = view[:done].tobytes()
        keep = written.rfind(b"\n") + 1
        self.lines += written.count(b"\n")
        if keep < done and self.regular:
            try:
                end = os.lseek(self.fd, 0, os.SEEK_CUR)
                os.ftruncate(self.fd, end - (done - keep))
            except OSError:
                pass

    def describe_error(self) -> str:
        assert self.error is not None
        if self.error.errno == errno.EPIPE:
            why = "the reader went away (broken pipe)"
        else:
            why = os.strerror(self.error.errno) if self.error.errno else str(self.error)
        return f"cannot write events to {self.name}: {why}"

    def close(self) -> None:
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP each ask a stream to stop, the same way: the handler only
    records the signal (and interrupts a poll); the loop sees ``requested`` and then writes
    out everything delivered, detaches and clears the consumer state."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _on(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def __enter__(self) -> StopSignals:
        self._old = {s: signal.signal(s, self._on) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)  # type: ignore[arg-type]


class Streamer:
    """One consumer of a tracer's events. Use as a context manager."""

    def __init__(self, session: Session, out: Output | BinaryIO, json: bool = False,
                 color: bool = False, notices: TextIO | None = None,
                 view: TraceView | None = None) -> None:
        self.session = session
        self.view = view if view is not None else TraceView()
        self.out = out if isinstance(out, Output) else Output(out)
        self.mode = lib.SW_OUT_JSON if json else lib.SW_OUT_HUMAN
        self.color = color
        self.notices = notices
        self._consumer: RingConsumer | None = None
        self._streaming = False
        self._dropped_seen = 0
        self._lost_seen = (0, 0, 0)
        self._next_drop_check = 0.0
        self.dropped_during = 0
        self.told_failure = False

    def __enter__(self) -> Streamer:
        streaming, consumer = self.session.state()
        if streaming and consumer and consumer != os.getpid() and os.path.isdir(f"/proc/{consumer}"):
            raise SwatchError(f"another `swatch watch` (pid {consumer}) is already attached")
        _setup_formatter()
        self.view.apply()
        self._consumer = RingConsumer(self.session.maps["events"])
        # Never trace our own writes, whatever the target (even a tree we are part of): the
        # mark is in our task-local storage and goes when we exit.
        self.session.exclude(os.getpid())
        counters = self.session.counters()
        self._dropped_seen = counters.total_dropped
        self._lost_seen = (counters.pid_filter_full, counters.pid_stats_full,
                           counters.untracked)
        self.session.set_streaming(True, os.getpid())
        self._streaming = True
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop_emitting()
        finally:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _stop_emitting(self) -> None:
        if self._streaming:
            self._streaming = False
            self.session.set_streaming(False, 0)

    @property
    def delivered(self) -> int:
        assert self._consumer is not None
        return sum(self._consumer.delivered(t) for t in range(1, lib.SW_EV_TYPES))

    @property
    def written(self) -> int:
        """Lines written to the output (events, and `lost` lines in JSON mode)."""
        return self.out.lines

    def pump(self, timeout_ms: int = LIVE_MS, denials: object = None) -> int:
        """Wait up to timeout_ms for events, write them out; returns how many. A
        DenialStreamer's lines are merged in, in time order."""
        assert self._consumer is not None
        n = self._consumer.poll(timeout_ms)
        extra = denials.take() if denials is not None else []  # type: ignore[attr-defined]
        if n or extra:
            self._write(extra)
        if self.view.fold_startup:
            self._release_held(FOLD_MAX_AGE_NS)
        now = time.monotonic()
        if now >= self._next_drop_check:
            self._next_drop_check = now + DROP_CHECK_S
            self.check_drops()
        return n

    def finish(self, denials: object = None) -> None:
        """Stop the kernel emitting, then write out everything still queued and report any
        final drops: every event delivered to us is written (unless the output failed)."""
        assert self._consumer is not None
        self._stop_emitting()
        while True:
            n = self._consumer.drain()
            extra = denials.take_all() if denials is not None else []  # type: ignore[attr-defined]
            if not n and not extra:
                break
            self._write(extra)
        if self.view.fold_startup:
            self._release_held(0)
        self.check_drops()

    def _write(self, extra: Iterable[tuple[int, bytes]] = ()) -> None:
        """The batch, with ``extra`` (ktime, line) pairs put among its records in time order."""
        assert self._consumer is not None
        for ktime, line in sorted(extra):
            for chunk in self._consumer.format(self.mode, self.color, until_ns=ktime):
                self._emit(chunk)
            self._emit(line)
        for chunk in self._consumer.format(self.mode, self.color):
            self._emit(chunk)

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
        assert self._consumer is not None
        chunk = self._consumer.release_held(max_age_ns, self.color)
        if chunk.nbytes:
            self._emit(chunk)

    def check_drops(self) -> None:
        counters = self.session.counters()
        self._check_membership(counters)
        total = counters.total_dropped
        new = total - self._dropped_seen
        if new <= 0:
            return
        self._dropped_seen = total
        self.dropped_during += new
        if self.mode == lib.SW_OUT_JSON:
            self._emit(f'{{"type":"lost","dropped":{new},"total_dropped":{total}}}\n'.encode())
        tell(self.notices, f"swatch: {new} events dropped (ring buffer full); {total} since "
                           "load\n")

    def _check_membership(self, counters: Counters) -> None:
        """A notice line when the kernel could not record a process (maps full, no memory)."""
        now = (counters.pid_filter_full, counters.pid_stats_full, counters.untracked)
        new = [b - a for a, b in zip(self._lost_seen, now)]
        self._lost_seen = now
        if new[2] > 0:
            tell(self.notices, f"swatch: {new[2]} new processes could not be marked at fork "
                               f"and are NOT traced; {now[2]} since load\n")
        if new[1] > 0:
            tell(self.notices, f"swatch: {new[1]} processes not counted per process "
                               f"(pid_stats full, --max-pids); {now[1]} since load\n")
        if new[0] > 0:
            tell(self.notices, f"swatch: {new[0]} children not listed in pid_filter (full, "
                               f"--max-pids; still traced); {now[0]} since load\n")
