"""`serve --json-log FILE`: the event stream as JSON lines, rotated by size for log shippers.

Rotation is by rename, never by truncating in place: when the next whole line would take FILE
past ``max_bytes``, FILE is fsynced and renamed to FILE.1 (FILE.1 to FILE.2, ... the oldest
beyond ``keep`` is removed) and a new FILE is created. A shipper tailing FILE (Vector, Fluent
Bit, Filebeat, Promtail) keeps reading the renamed file to its end by inode and then picks up the
new one, so it loses nothing. Lines are never split across files. ``reopen()`` (SIGHUP) closes
and reopens FILE by name, for an outside logrotate that renamed it.
"""

from __future__ import annotations

import os
from pathlib import Path

from syscall_watcher.errors import SwatchError
from syscall_watcher.trace.stream import Output

DEFAULT_MAX_BYTES = 100 << 20
DEFAULT_KEEP = 5


def _open_append(path: Path) -> int:
    try:
        return _open_append_raw(path)
    except OSError as err:
        raise SwatchError(f"--json-log {path}: cannot open for writing: "
                          f"{err.strerror}") from None


class RotatingJsonLog(Output):
    """An Output (what a Streamer writes to: events, denials) that appends to ``path`` and
    rotates it by rename at line boundaries. ``rotations`` counts the renames."""

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP) -> None:
        if max_bytes < 1:
            raise SwatchError(f"--json-log-max-bytes {max_bytes}: give at least 1 byte")
        if keep < 1:
            raise SwatchError(f"--json-log-keep {keep}: keep at least 1 rotated file")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        super().__init__(_open_append(self.path), name=str(self.path))
        self._size = os.fstat(self.fd).st_size

    def write(self, data: bytes | memoryview) -> bool:
        """Whole lines; each goes to the current file unless it would take it past
        max_bytes (then rotate first). A line longer than max_bytes gets a file of its own."""
        if self.error is not None:
            return False
        view = memoryview(data).cast("B")
        while len(view):
            room = self.max_bytes - self._size
            if len(view) <= room:
                part = view
            else:
                cut = bytes(view[:room]).rfind(b"\n") + 1 if room > 0 else 0
                if cut == 0 and self._size == 0:  # one line longer than max_bytes
                    cut = bytes(view).find(b"\n") + 1 or len(view)
                if cut == 0:
                    if not self._rotate():
                        return False
                    continue
                part = view[:cut]
            if not super().write(part):
                return False
            self._size += len(part)
            view = view[len(part):]
        return True

    def _rotate(self) -> bool:
        try:
            os.fsync(self.fd)
            for n in range(self.keep, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if n == self.keep:
                    older.unlink(missing_ok=True)
                else:
                    newer = self.path.with_name(f"{self.path.name}.{n + 1}")
                    if older.exists():
                        older.rename(newer)
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
            fd = _open_append_raw(self.path)
        except OSError as err:
            self.error = err
            return False
        os.close(self.fd)
        self.fd = fd
        self._size = 0
        self.rotations += 1
        return True

    def reopen(self) -> None:
        """SIGHUP: close FILE and open it again by name (logrotate renamed it)."""
        if self.error is not None:
            return
        try:
            fd = _open_append_raw(self.path)
        except OSError as err:
            self.error = err
            return
        self.sync()
        os.close(self.fd)
        self.fd = fd
        self._size = os.fstat(fd).st_size

    def sync(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            except OSError as err:
                self.error = self.error or err

    def close(self) -> None:
        self.sync()
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def _open_append_raw(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
