"""The audit log's writer: append records in batches (one write and one fsync per batch), sign a
checkpoint every N records or T seconds and at close, survive a crash.

Layout of the audit directory::

    records-<first seq, 16 digits>.jsonl   the records (records.py), a new file every ~64 MiB
    checkpoints.jsonl                      signed checkpoints (checkpoints.py)
    audit.key / audit.pub                  the Ed25519 key (0600) / its public half
    lock                                   held (flock) by the one writer
    quarantine/<time>/                     what `swatch audit repair` cut off, kept for forensics

At open the writer takes the lock, loads (or creates) the key, cuts a torn last line (a crash
mid-write; logged as a ``torn_tail`` record) and walks the whole log (verify.py): a log that does
not verify is refused, naming the first bad record, with `swatch audit repair` offered.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Iterable

from syscall_watcher import audit
from syscall_watcher.audit import merkle
from syscall_watcher.audit.checkpoints import (
    CHECKPOINTS_FILE,
    KEY_FILE,
    PUB_FILE,
    Checkpoint,
    load_or_create_key,
    public_pem,
    sign,
)
from syscall_watcher.audit.records import AuditError, seal
from syscall_watcher.audit.verify import LogState, Torn, segment_name, walk

DEFAULT_DIR = audit.DEFAULT_DIR
LOCK_FILE = "lock"


class CorruptLog(AuditError):
    """The log does not verify: the writer will not append to it."""


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_dir(audit_dir: Path) -> None:
    """Create the audit directory (0700) if needed; say plainly when it cannot be written."""
    try:
        audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise AuditError(f"{audit_dir}: cannot create the audit directory: "
                         f"{err.strerror}") from None
    if not audit_dir.is_dir():
        raise AuditError(f"{audit_dir}: not a directory")
    if not os.access(audit_dir, os.W_OK | os.X_OK):
        raise AuditError(f"{audit_dir}: the audit directory is not writable by uid "
                         f"{os.geteuid()}")


def take_lock(audit_dir: Path) -> int:
    """The one-writer lock (released when the fd closes, so also when the writer dies)."""
    path = audit_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise AuditError(f"{path}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise AuditError(f"{audit_dir}: another process (pid {holder or '?'}) is writing "
                             "this audit log") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def cut_torn(torn: Torn) -> None:
    """Truncate a file to its complete lines, durably."""
    fd = os.open(torn.file, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditLog:
    """The writer. ``AuditLog.open(dir)``, then ``append``/``append_batch``/``gap``/
    ``lifecycle`` (each one write + fsync), ``tick()`` now and then (time-based checkpoints),
    ``close()`` (a last checkpoint). One writer per directory (``lock``)."""

    def __init__(self, audit_dir: Path, state: LogState, key: Any, lock_fd: int,
                 key_created: bool, checkpoint_every: int, checkpoint_seconds: float,
                 segment_bytes: int) -> None:
        self.audit_dir = audit_dir
        self.key = key
        self.key_created = key_created
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.segment_bytes = segment_bytes
        self._lock_fd = lock_fd
        self.next_seq = state.records
        self.last_hash = state.last_hash
        self.frontier: merkle.Frontier = state.frontier
        self.checkpoints = list(state.checkpoints)
        self._last_checkpoint_at = time.monotonic()
        self._fd = -1
        self._segment_size = 0
        self._cp_fd = os.open(audit_dir / CHECKPOINTS_FILE,
                              os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if state.files:
            last = state.files[-1]
            self._fd = os.open(last, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            self._segment_size = os.fstat(self._fd).st_size
        self.closed = False

    # ------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, audit_dir: Path | str = DEFAULT_DIR, *, checkpoint_every: int = 1000,
             checkpoint_seconds: float = 60.0, segment_bytes: int = 64 << 20,
             key_path: Path | None = None,
             notes: list[dict[str, Any]] | None = None) -> AuditLog:
        """Open (creating if need be) the log for appending; ``notes``: ``log`` entries
        (``{"what": ..., "detail": {...}}``) to write first, before the ``start`` record."""
        audit_dir = Path(audit_dir)
        if checkpoint_every < 1 or not checkpoint_seconds > 0 or segment_bytes < 1:
            raise AuditError("checkpoint_every, checkpoint_seconds and segment_bytes must be > 0")
        prepare_dir(audit_dir)
        lock_fd = take_lock(audit_dir)
        try:
            key_file = key_path or audit_dir / KEY_FILE
            pub_file = key_file.with_name(PUB_FILE) if key_path else audit_dir / PUB_FILE
            key, created = load_or_create_key(key_file, pub_file)
            state = walk(audit_dir, key.public_key())
            torn = state.torn
            if state.problem is None and (torn or state.torn_checkpoint):
                # A crash mid-write: keep the complete lines, say what was cut.
                for t in (torn, state.torn_checkpoint):
                    if t is not None:
                        cut_torn(t)
            if state.problem is not None:
                raise CorruptLog(f"the audit log in {audit_dir} does not verify: "
                                 f"{state.problem}; nothing was appended (run `swatch audit "
                                 f"repair --audit-dir {audit_dir}` to set the bad part aside)")
            log = cls(audit_dir, state, key, lock_fd, created, checkpoint_every,
                      checkpoint_seconds, segment_bytes)
        except BaseException:
            os.close(lock_fd)
            raise
        batch: list[dict[str, Any]] = []
        for t, what in ((torn, "records"), (state.torn_checkpoint, "checkpoints")):
            if t is not None:
                batch.append({"kind": "log", "what": "torn_tail",
                              "detail": {"file": t.file.name, "offset": t.offset,
                                         "bytes_cut": t.length, "of": what}})
        for note in notes or []:
            batch.append({"kind": "log", "what": note["what"], "detail": note.get("detail", {})})
        batch.append({"kind": "log", "what": "start",
                      "detail": {"pid": os.getpid(), "key": state.key,
                                 "key_created": created}})
        log._write(batch)
        return log

    @property
    def public_key_pem(self) -> str:
        return public_pem(self.key.public_key()).decode()

    # ---------------------------------------------------------------------------- appending
    def append(self, event: dict[str, Any]) -> int:
        """One event of the stream, as given; returns its seq."""
        return self.append_batch([event])[0]

    def append_batch(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Events of one batch: one write, one fsync. Returns their seqs."""
        recs = []
        for ev in events:
            if not isinstance(ev, dict):
                raise AuditError(f"an event is a JSON object, not {type(ev).__name__}")
            recs.append({"kind": "event", "event": ev})
        return self._write(recs)

    def gap(self, what: str, lost: int, after_seq: int | None = None,
            detail: dict[str, Any] | None = None) -> int:
        """``lost`` records of ``what`` (e.g. "denials") never reached the log (ring buffer
        full); ``after_seq`` defaults to the last record written; ``detail``: why, and where
        from (serve: ``cause``, ``ring``, ``total_dropped``, ``load``)."""
        body: dict[str, Any] = {"kind": "gap", "what": what, "lost": int(lost)}
        if after_seq is not None:
            body["after_seq"] = after_seq
        if detail is not None:
            body["detail"] = detail
        return self._write([body])[0]

    def lifecycle(self, component: str, action: str, detail: dict[str, Any] | None = None) -> int:
        """A kernel component loaded, unloaded, changed phase: any (component, action) pair,
        so a new one (a policy's phase change) is one call."""
        return self._write([{"kind": "lifecycle", "component": component, "action": action,
                             "detail": detail or {}}])[0]

    def append_records(self, bodies: list[dict[str, Any]]) -> list[int]:
        """Records of any of the appendable kinds (``event``, ``gap``, ``lifecycle``), in order,
        as one batch: one write, one fsync. A gap without ``after_seq`` gets the record just
        before it."""
        for body in bodies:
            if body.get("kind") not in ("event", "gap", "lifecycle"):
                raise AuditError(f"cannot append a record of kind {body.get('kind')!r}")
        return self._write(bodies)

    def _write(self, bodies: list[dict[str, Any]]) -> list[int]:
        if self.closed:
            raise AuditError("the audit log is closed")
        if not bodies:
            return []
        now = time.time_ns()
        lines = []
        seqs = []
        seq, prev = self.next_seq, self.last_hash
        leaves = []
        for body in bodies:
            if body["kind"] == "gap" and body.get("after_seq") is None:
                body["after_seq"] = seq - 1 if seq else None
            body["seq"], body["prev"], body["time_ns"] = seq, prev, now
            line, prev = seal(body)
            lines.append(line)
            leaves.append(merkle.leaf_hash(line[:-1]))
            seqs.append(seq)
            seq += 1
        data = b"".join(lines)
        if self._fd < 0 or self._segment_size >= self.segment_bytes:
            self._new_segment()
        write_all(self._fd, data)
        os.fsync(self._fd)
        self._segment_size += len(data)
        for leaf in leaves:
            self.frontier.append(leaf)
        self.next_seq, self.last_hash = seq, prev
        self.tick()
        return seqs

    def _new_segment(self) -> None:
        path = self.audit_dir / segment_name(self.next_seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o640)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._segment_size = 0
        fsync_dir(self.audit_dir)

    # -------------------------------------------------------------------------- checkpoints
    @property
    def unsigned(self) -> int:
        return self.next_seq - (self.checkpoints[-1].size if self.checkpoints else 0)

    def tick(self) -> Checkpoint | None:
        """Sign a checkpoint when N records or T seconds have passed since the last one."""
        waited = time.monotonic() - self._last_checkpoint_at
        due = self.unsigned >= self.checkpoint_every or (
            self.unsigned > 0 and waited >= self.checkpoint_seconds)
        return self.checkpoint() if due else None

    def checkpoint(self) -> Checkpoint | None:
        """Sign the tree as it is now (nothing when no record came since the last one)."""
        if not self.unsigned:
            return None
        cp = sign(self.key, self.next_seq, self.frontier.root().hex(), self.last_hash,
                  time.time_ns())
        write_all(self._cp_fd, cp.line())
        os.fsync(self._cp_fd)
        self.checkpoints.append(cp)
        self._last_checkpoint_at = time.monotonic()
        return cp

    def close(self) -> None:
        """A ``stop`` record, a last checkpoint, and the lock released."""
        if self.closed:
            return
        try:
            self._write([{"kind": "log", "what": "stop", "detail": {"pid": os.getpid()}}])
            self.checkpoint()
        finally:
            self.closed = True
            for fd in (self._fd, self._cp_fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._cp_fd = self._lock_fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
