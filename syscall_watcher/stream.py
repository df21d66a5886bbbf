"""Attach to a tracer's ring buffer and write its events as human lines or JSON lines."""

from __future__ import annotations

import os
import time
from typing import BinaryIO, TextIO

from . import libbpf, syscalls
from .errors import SwatchError
from .libbpf import RingConsumer, lib
from .tracer import Counters, Session

DROP_CHECK_S = 0.5


def _setup_formatter() -> None:
    sc, errs = syscalls.format_tables()
    libbpf.set_format_tables(sc, errs)
    offset = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(
        time.CLOCK_MONOTONIC
    )
    libbpf.set_format_clock(offset, time.localtime().tm_gmtoff)


class Streamer:
    """One consumer of a tracer's events. Use as a context manager."""

    def __init__(self, session: Session, out: BinaryIO, json: bool = False, color: bool = False,
                 notices: TextIO | None = None) -> None:
        self.session = session
        self.out = out
        self.mode = lib.SW_OUT_JSON if json else lib.SW_OUT_HUMAN
        self.color = color
        self.notices = notices
        self._consumer: RingConsumer | None = None
        self._dropped_seen = 0
        self._lost_seen = (0, 0, 0)
        self._next_drop_check = 0.0
        self.dropped_during = 0

    def __enter__(self) -> Streamer:
        streaming, consumer = self.session.state()
        if streaming and consumer and consumer != os.getpid() and os.path.isdir(f"/proc/{consumer}"):
            raise SwatchError(f"another `swatch watch` (pid {consumer}) is already attached")
        _setup_formatter()
        self._consumer = RingConsumer(self.session.maps["events"])
        # Never trace our own writes, whatever the target (even a tree we are part of): the
        # mark is in our task-local storage and goes when we exit.
        self.session.exclude(os.getpid())
        counters = self.session.counters()
        self._dropped_seen = counters.total_dropped
        self._lost_seen = (counters.pid_filter_full, counters.pid_stats_full,
                           counters.untracked)
        self.session.set_streaming(True, os.getpid())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.session.set_streaming(False, 0)
        finally:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    @property
    def delivered(self) -> int:
        assert self._consumer is not None
        return sum(self._consumer.delivered(t) for t in range(1, lib.SW_EV_TYPES))

    def pump(self, timeout_ms: int = 100) -> int:
        """Wait up to timeout_ms for events, write them out; returns how many."""
        assert self._consumer is not None
        n = self._consumer.poll(timeout_ms)
        if not n:  # a quiet target: records below the wakeup watermark never notify; take them
            n = self._consumer.drain()
        if n:
            self._write()
        now = time.monotonic()
        if now >= self._next_drop_check:
            self._next_drop_check = now + DROP_CHECK_S
            self.check_drops()
        return n

    def finish(self) -> None:
        """Write out everything still queued, then report any final drops."""
        assert self._consumer is not None
        while self._consumer.drain():
            self._write()
        self.check_drops()
        self.out.flush()

    def _write(self) -> None:
        assert self._consumer is not None
        for chunk in self._consumer.format(self.mode, self.color):
            self.out.write(chunk)
        self.out.flush()  # a live stream: whoever reads the file or pipe sees each batch now

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
            self.out.write(
                f'{{"type":"lost","dropped":{new},"total_dropped":{total}}}\n'.encode()
            )
        if self.notices is not None:
            self.notices.write(
                f"swatch: {new} events dropped (ring buffer full); {total} since load\n"
            )
            self.notices.flush()

    def _check_membership(self, counters: Counters) -> None:
        """A notice line when the kernel could not record a process (maps full, no memory)."""
        now = (counters.pid_filter_full, counters.pid_stats_full, counters.untracked)
        if now == self._lost_seen or self.notices is None:
            self._lost_seen = now
            return
        new = [b - a for a, b in zip(self._lost_seen, now)]
        self._lost_seen = now
        if new[2]:
            self.notices.write(f"swatch: {new[2]} new processes could not be marked at fork "
                               f"and are NOT traced; {now[2]} since load\n")
        if new[1]:
            self.notices.write(f"swatch: {new[1]} processes not counted per process "
                               f"(pid_stats full, --max-pids); {now[1]} since load\n")
        if new[0]:
            self.notices.write(f"swatch: {new[0]} children not listed in pid_filter (full, "
                               f"--max-pids; still traced); {now[0]} since load\n")
        self.notices.flush()
