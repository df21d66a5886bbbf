"""Where a stream's lines go, and how it is stopped: an output written whole lines at a time straight
to its file descriptor (nothing sits in a buffer a signal could lose; a failed write ends writing
once and says so), notices that never fail the process, and SIGINT/SIGTERM/SIGHUP as one stop.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from typing import BinaryIO, TextIO

from syscall_watcher.kernel import libbpf

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
