"""When the kernel wakes a stream's consumer (bpf/watcher.bpf.c output()): the first record
after a quiet spell at once, a storm about once per wakeup_bytes sent — never once per record
(each wakeup is an IPI on the traced process's CPU)."""

from __future__ import annotations

import io
import os
import signal
import time

from syscall_watcher.kernel._libbpf import ffi, lib
from syscall_watcher.targets.target import Target
from syscall_watcher.trace.run import _held_child
from syscall_watcher.trace.stream import Streamer
from syscall_watcher.trace.tracer import LoadedTracer, wakeup_threshold


class _Held:
    """A child held before its exec (trace/run.py's _held_child) under a tracer loaded for it:
    `go()` lets it exec, `reaped()` says it was waited for; on leaving, whatever is still
    running or held is ended and the tracer closed, whatever the test did."""

    def __init__(self, path: str, argv: list[str]) -> None:
        self.pid, self._release = _held_child(path, argv)
        try:
            self.tracer = LoadedTracer.load(Target(mode="pid", pid=self.pid), "all")
        except BaseException:
            self.__exit__()
            raise

    def go(self) -> None:
        os.close(self._release)
        self._release = -1

    def reaped(self) -> None:
        self.pid = 0

    def __enter__(self) -> "_Held":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._release >= 0:
            os.close(self._release)
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if hasattr(self, "tracer"):
            self.tracer.close()


def test_first_record_after_quiet_wakes_the_consumer() -> None:
    """One exec in a quiet ring wakes a poll that would otherwise wait 20 s for its timeout
    (before: records went without a wakeup until wakeup_bytes were queued)."""
    with _Held("/bin/true", ["true"]) as held:
        with Streamer(held.tracer, io.BytesIO(), json=True) as streamer:
            held.go()
            consumer = streamer.sources[0].consumer
            assert consumer is not None
            n = consumer.poll(20_000)
            assert consumer.woken, "the poll ended on its timeout: the kernel never woke it"
            assert n >= 1
            os.waitpid(held.pid, 0)
            held.reaped()
            streamer.finish()
        assert held.tracer.counters().wakeups >= 1


def test_storm_wakes_per_batch_not_per_record(workload) -> None:  # type: ignore[no-untyped-def]
    """A streamed storm: wakeups stay within one per wakeup_bytes sent plus one per quiet-spell
    gap of wall time (before: once wakeup_bytes were queued, every record forced a wakeup for
    as long as the consumer was busy with the previous batch: tens of thousands here)."""
    calls = 200_000
    storm = workload("storm")
    with _Held(storm, [storm, "getppid", str(calls)]) as held:
        start = time.monotonic()
        with Streamer(held.tracer, io.BytesIO(), json=True) as streamer:
            held.go()
            while not os.waitpid(held.pid, os.WNOHANG)[0]:
                streamer.pump(50)
            held.reaped()
            streamer.finish()
            delivered = streamer.delivered
        elapsed = time.monotonic() - start
        c = held.tracer.counters()
        assert c.total_emitted == delivered + c.total_dropped
        assert delivered >= calls
        # Bytes sent: a getppid record is the event without data[] (+ the ring's 8-byte
        # header); the few start-up records (exec, mmap paths...) add at most 64 KiB.
        record = (ffi.offsetof("struct sw_syscall_event", "data") + 8 + 7) & ~7
        sent = c.total_emitted * record + (64 << 10)
        bound = (sent // wakeup_threshold(16 << 20)
                 + int(elapsed / (lib.SW_WAKEUP_GAP_NS / 1e9)) + 8)
        assert 1 <= c.wakeups <= bound, (c.wakeups, bound, c.total_emitted)
