"""Reading the audit log back and checking it: the hash chain, the Merkle tree against every
signed checkpoint, the signatures, and truncation. The writer walks the log this way at start
(log.py), ``swatch audit verify`` to judge it, ``prove`` to collect the leaves.

The walk stops at the first problem and names it: the record (seq, file, byte offset) and what
is wrong. A tree root that differs from a signed checkpoint names the first record the last
matching checkpoint does not cover: some record from there to the checkpoint's size changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from syscall_watcher.audit import merkle
from syscall_watcher.audit.checkpoints import (
    CHECKPOINTS_FILE,
    Checkpoint,
    fingerprint,
    parse_checkpoint,
)
from syscall_watcher.audit.records import GENESIS, AuditError, body_problem

SEGMENT = re.compile(r"^records-(\d{16})\.jsonl$")


def segment_name(first_seq: int) -> str:
    return f"records-{first_seq:016d}.jsonl"


def segments(audit_dir: Path) -> list[tuple[int, Path]]:
    """(first seq by name, path) of every record file, in order."""
    found = []
    for p in audit_dir.iterdir():
        m = SEGMENT.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


@dataclass
class Problem:
    """The first thing wrong with the log."""

    what: str
    file: Path | None = None
    offset: int | None = None
    seq: int | None = None
    kind: str = "record"  # record | tree | truncated | checkpoint

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.file is not None:
            where.append(f"{self.file}" + (f" byte {self.offset}" if self.offset is not None
                                           else ""))
        return (", ".join(where) + ": " if where else "") + self.what


@dataclass
class Torn:
    """A last line without its newline: what a crash mid-write leaves."""

    file: Path
    offset: int  # where the incomplete line starts (= the length to keep)
    length: int  # its bytes


@dataclass
class LogState:
    """What a walk found: enough for the writer to go on appending, and for verify's report."""

    audit_dir: Path
    records: int = 0
    last_hash: str = GENESIS
    frontier: merkle.Frontier = field(default_factory=merkle.Frontier)
    files: list[Path] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    checkpoints_bytes: int = 0  # length of the complete checkpoint lines
    matched_size: int = 0  # the largest checkpoint size whose root matched
    trusted_checked: int = 0
    torn: Torn | None = None
    torn_checkpoint: Torn | None = None
    problem: Problem | None = None
    key: str = ""
    leaves: list[bytes] | None = None
    end: tuple[Path, int] | None = None  # the last file and its length of complete records
    stopped: bool = False  # the last record is a writer's `stop` (which signs right after it)

    @property
    def unsigned(self) -> int:
        """Records after the last checkpoint (not yet covered by a signature)."""
        return self.records - (self.checkpoints[-1].size if self.checkpoints else 0)


def _lines(data: bytes) -> Generator[tuple[int, bytes], None, int]:
    """(offset, line without newline) of each complete line; the torn rest's offset last."""
    pos = 0
    n = len(data)
    find = data.find
    while pos < n:
        nl = find(b"\n", pos)
        if nl < 0:
            return pos
        yield pos, data[pos:nl]
        pos = nl + 1
    return pos


def read_checkpoints(audit_dir: Path, public: Ed25519PublicKey | None,
                     state: LogState) -> None:
    path = audit_dir / CHECKPOINTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    fp = fingerprint(public) if public is not None else ""
    gen = _lines(data)
    index = 0
    while True:
        try:
            off, line = next(gen)
        except StopIteration as stop:
            rest = stop.value
            if rest < len(data):
                state.torn_checkpoint = Torn(path, rest, len(data) - rest)
            state.checkpoints_bytes = rest
            return
        index += 1
        where = f"checkpoint #{index}"
        try:
            cp = parse_checkpoint(line)
        except AuditError as err:
            state.problem = Problem(f"{where}: {err}", path, off, kind="checkpoint")
            return
        if public is not None:
            if cp.key != fp:
                state.problem = Problem(f"{where} (size {cp.size}) names key {cp.key}, not the "
                                        f"verifying key {fp} (replaced?)", path, off,
                                        kind="checkpoint")
                return
            if not cp.signature_ok(public):
                state.problem = Problem(f"{where} (size {cp.size}): the signature does not "
                                        f"verify with key {fp} (replaced or edited)", path, off,
                                        kind="checkpoint")
                return
        prev = state.checkpoints[-1] if state.checkpoints else None
        if prev is not None and cp.size < prev.size:
            state.problem = Problem(f"{where} covers {cp.size} records, fewer than checkpoint "
                                    f"#{index - 1}'s {prev.size} (reordered or replaced?)",
                                    path, off, kind="checkpoint")
            return
        state.checkpoints.append(cp)


def walk(audit_dir: Path, public: Ed25519PublicKey | None, *,
         trusted: list[Checkpoint] | None = None, collect_leaves: bool = False,
         stop_after: int | None = None, records_only: bool = False,
         strict: bool = False) -> LogState:
    """Read the whole log, checking everything it can (signatures only with ``public``);
    ``trusted`` checkpoints come from elsewhere (an auditor's copy) and must match too.
    ``stop_after``: stop once that many records are read (a proof needs no more);
    ``records_only``: leave checkpoints.jsonl out (the chain alone); ``strict``: also check
    every record is in the canonical encoding (records.body_problem)."""
    state = LogState(audit_dir=audit_dir)
    if public is not None:
        state.key = fingerprint(public)
    if not audit_dir.is_dir():
        raise AuditError(f"{audit_dir}: no audit log here (not a directory)")
    if not records_only:
        read_checkpoints(audit_dir, public, state)
        if state.problem:
            return state
    if stop_after == 0:
        return state
    if collect_leaves:
        state.leaves = []
    # Every checkpoint, ours and the auditor's, by the size it covers.
    by_size: dict[int, list[tuple[str, Checkpoint]]] = {}
    for i, cp in enumerate(state.checkpoints, 1):
        by_size.setdefault(cp.size, []).append((f"checkpoint #{i}", cp))
    for i, cp in enumerate(trusted or [], 1):
        if public is not None and not cp.signature_ok(public):
            state.problem = Problem(f"the given checkpoint #{i} (size {cp.size}) does not verify "
                                    f"with key {state.key}", kind="checkpoint")
            return state
        by_size.setdefault(cp.size, []).append((f"the given checkpoint #{i}", cp))

    seq = 0
    prev = GENESIS
    last_rec: dict[str, Any] = {}
    frontier = state.frontier
    leaves = state.leaves
    range_start: tuple[int, Path, int] | None = None  # first record since the last match
    files = segments(audit_dir)
    for n, (first, path) in enumerate(files):
        state.files.append(path)
        if first != seq:
            state.problem = Problem(f"{path.name} should start at seq {seq} but is named for "
                                    f"seq {first} (a file of records missing or renamed)",
                                    path, 0, seq)
            return state
        data = path.read_bytes()
        gen = _lines(data)
        while True:
            try:
                off, line = next(gen)
            except StopIteration as stop:
                rest = stop.value
                break
            if range_start is None:
                range_start = (seq, path, off)
            rec, digest, what = body_problem(line, strict)
            if rec is None:
                state.problem = Problem(what, path, off, seq)
                return state
            if rec["seq"] != seq:
                state.problem = Problem(
                    f"the record says seq {rec['seq']} where seq {seq} was expected (a record "
                    "deleted, inserted or moved)", path, off, seq)
                return state
            if rec["prev"] != prev:
                state.problem = Problem(
                    f"prev does not match the hash of seq {seq - 1} (one of the two was "
                    "changed)" if seq else "prev of the first record is not the genesis value",
                    path, off, seq)
                return state
            leaf = merkle.leaf_hash(line)
            frontier.append(leaf)
            if leaves is not None:
                leaves.append(leaf)
            prev = digest
            seq += 1
            last_rec = rec
            cps = by_size.get(seq)
            if cps:
                root = frontier.root().hex()
                for name, cp in cps:
                    if cp.root != root or cp.last != digest:
                        rs, rpath, roff = range_start
                        state.problem = Problem(
                            f"records {rs}..{seq - 1} do not match {name} (size {cp.size}): the "
                            "tree root differs, so a record in that range was changed or "
                            "replaced (and the chain recomputed)", rpath, roff, rs, kind="tree")
                        state.records, state.last_hash = seq, prev
                        return state
                    if name.startswith("the given"):
                        state.trusted_checked += 1
                state.matched_size = seq
                range_start = None
            if stop_after is not None and seq >= stop_after:
                rest = off + len(line) + 1
                break
        state.end = (path, rest)
        if stop_after is not None and seq >= stop_after:
            break
        if rest < len(data):
            if n == len(files) - 1:
                state.torn = Torn(path, rest, len(data) - rest)
            else:
                state.problem = Problem(f"{path.name} ends in an incomplete line but is not the "
                                        "last file", path, rest, seq)
                state.records, state.last_hash = seq, prev
                return state
    state.records, state.last_hash = seq, prev
    state.stopped = last_rec.get("kind") == "log" and last_rec.get("what") == "stop"
    signed = max((cp.size for cp in state.checkpoints), default=0)
    if stop_after is None and not records_only and state.stopped and seq > signed \
            and state.torn is None:
        # A writer signs right after its stop record: records left unsigned after a stop mean
        # the checkpoints covering them were cut off or deleted (or the writer died in between).
        state.problem = Problem(
            f"checkpoints missing: the log ends with a writer's stop record, after which the "
            f"writer always signs, but the last checkpoint covers {signed} of {seq} records "
            f"({CHECKPOINTS_FILE} cut or deleted?)", audit_dir / CHECKPOINTS_FILE, None,
            seq - 1, kind="checkpoint")
        return state
    if stop_after is None:
        for size in sorted(by_size, reverse=True):  # the largest: all that was cut
            if size > seq:
                name, cp = by_size[size][0]
                end = f" ({state.end[0]} ends at byte {state.end[1]})" if state.end else ""
                state.problem = Problem(
                    f"truncated: the log holds {seq} records (seq 0..{seq - 1}) but {name} "
                    f"covers {cp.size}: {cp.size - seq} records after seq {seq - 1} were cut "
                    f"off{end}", state.end[0] if state.end else None,
                    state.end[1] if state.end else None, seq, kind="truncated")
                return state
    return state


def iter_records(audit_dir: Path, since_ns: int | None = None,
                 from_seq: int = 0) -> Iterator[dict[str, Any]]:
    """Each record as a dict, in order, without checking anything (show/tail): a line that is
    not JSON (or a torn last line) comes as ``{"kind": "unreadable", ...}`` naming where."""
    if not audit_dir.is_dir():
        raise AuditError(f"{audit_dir}: no audit log here (not a directory)")
    files = segments(audit_dir)
    # Skip whole files that end before from_seq (the next one starts at or below it).
    start = 0
    for i, (first, _path) in enumerate(files):
        if first <= from_seq:
            start = i
    for _first, path in files[start:]:
        with path.open("rb") as f:
            offset = 0
            for raw in f:
                try:
                    rec = json.loads(raw)
                    if not isinstance(rec, dict):
                        raise ValueError
                except ValueError:
                    rec = {"kind": "unreadable", "file": str(path), "offset": offset,
                           "complete": raw.endswith(b"\n")}
                offset += len(raw)
                seq = rec.get("seq")
                if isinstance(seq, int) and seq < from_seq:
                    continue
                t = rec.get("time_ns")
                if since_ns is not None and isinstance(t, int) and t < since_ns:
                    continue
                yield rec


class Follower:
    """New records as the writer appends them (`tail --follow`): reads on from where the last
    poll stopped, complete lines only, into the next file when the writer starts one."""

    def __init__(self, audit_dir: Path, next_seq: int) -> None:
        self.audit_dir = audit_dir
        self.next_seq = next_seq
        self._path: Path | None = None
        self._offset = 0

    def poll(self) -> list[dict[str, Any]]:
        files = segments(self.audit_dir)
        out: list[dict[str, Any]] = []
        if self._path is None:
            start = [p for first, p in files if first <= self.next_seq] or \
                [p for _, p in files[:1]]
            if not start:
                return out
            self._path, self._offset = start[-1], 0
        while True:
            try:
                with self._path.open("rb") as f:
                    if f.seek(0, 2) < self._offset:  # cut back (repair): read it again
                        self._offset = 0
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:  # moved aside by repair: start over
                self._path = None
                return out
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("seq"), int) \
                        and rec["seq"] >= self.next_seq:
                    out.append(rec)
                    self.next_seq = rec["seq"] + 1
            self._offset += end
            later = [p for _, p in files if p.name > self._path.name]
            if not later or end != len(data):
                return out
            self._path, self._offset = later[0], 0
