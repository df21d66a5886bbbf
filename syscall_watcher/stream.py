"""Attach to a tracer's ring buffer and write its events as human lines or JSON lines."""

from __future__ import annotations

import os
import time
from typing import BinaryIO, TextIO

from . import libbpf, syscalls
from .errors import SwatchError
from .libbpf import RingConsumer, lib
from .tracer import Session

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
        self._excluded_self = False
        self._dropped_seen = 0
        self._next_drop_check = 0.0
        self.dropped_during = 0

    def __enter__(self) -> Streamer:
        streaming, consumer = self.session.state()
        if streaming and consumer and consumer != os.getpid() and os.path.isdir(f"/proc/{consumer}"):
            raise SwatchError(f"another `swatch watch` (pid {consumer}) is already attached")
        _setup_formatter()
        self._consumer = RingConsumer(self.session.maps["events"])
        if self.session.meta().mode != lib.SW_TARGET_PID:
            self.session.add_pid(os.getpid())  # never trace our own writes
            self._excluded_self = True
        self._dropped_seen = self.session.counters().total_dropped
        self.session.set_streaming(True, os.getpid())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.session.set_streaming(False, 0)
            if self._excluded_self:
                self.session.remove_pid(os.getpid())
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
        total = self.session.counters().total_dropped
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
