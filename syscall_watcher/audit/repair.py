"""`swatch audit repair`: keep the part of a corrupt log that still verifies, set the rest aside.

Nothing is re-chained or re-signed over records that failed: the log is cut back to the last
point that verifies — the first bad record, or for a checkpoint that fails (bad signature,
root mismatch, truncation) the last checkpoint that held — and everything after it (record
bytes, whole files, checkpoint lines) is moved to ``quarantine/<UTC time>/`` for forensics. Then
a ``repair`` record saying what was wrong and what was moved is appended and signed, so the cut
stays visible to every later verify and to anyone holding an older checkpoint.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from syscall_watcher.audit.checkpoints import CHECKPOINTS_FILE, KEY_FILE, load_private
from syscall_watcher.audit.log import AuditLog, fsync_dir, prepare_dir, take_lock
from syscall_watcher.audit.records import AuditError
from syscall_watcher.audit.verify import LogState, Problem, segments, walk


@dataclass
class RepairReport:
    problem: Problem | None
    kept: int = 0
    records_moved: int = 0
    checkpoints_moved: int = 0
    quarantine: Path | None = None
    repair_seq: int | None = None


def _keep_count(problem: Problem, state: LogState) -> int:
    """How many records stay: up to the first bad record; for a root that differs, up to the
    last checkpoint that matched; when truncated, all there are; when a checkpoint line fails,
    up to the last good checkpoint before it."""
    if problem.kind == "truncated":
        return int(state.records)
    if problem.kind in ("record", "tree") and problem.seq is not None:
        return problem.seq
    return state.checkpoints[-1].size if state.checkpoints else 0


def repair(audit_dir: Path, key_path: Path | None = None) -> RepairReport:
    prepare_dir(audit_dir)
    key = load_private(key_path or audit_dir / KEY_FILE)
    public = key.public_key()
    lock_fd = take_lock(audit_dir)
    try:
        state = walk(audit_dir, public)
        problem = state.problem
        if problem is None:
            report = RepairReport(None)
        else:
            report = _set_aside(audit_dir, state, problem)
    finally:
        os.close(lock_fd)
    # Opening cuts a torn tail (and logs it); a repair record says what was set aside.
    notes = []
    if problem is not None:
        notes.append({"what": "repair",
                      "detail": {"problem": str(problem), "kept_records": report.kept,
                                 "records_set_aside": report.records_moved,
                                 "checkpoints_set_aside": report.checkpoints_moved,
                                 "quarantine": str(report.quarantine.relative_to(audit_dir))
                                 if report.quarantine else None}})
    with AuditLog.open(audit_dir, key_path=key_path, notes=notes) as log:
        if problem is not None:
            report.repair_seq = log.next_seq - 2  # the repair record, then start
    return report


def _set_aside(audit_dir: Path, state: LogState, problem: Problem) -> RepairReport:
    # A problem in the records themselves names the first bad one; one in the checkpoints (or
    # in matching them) goes back to the last checkpoint that held.
    keep = _keep_count(problem, state)
    qdir = audit_dir / "quarantine" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    n = 0
    while qdir.exists():
        n += 1
        qdir = qdir.with_name(qdir.name.split(".")[0] + f".{n}")
    qdir.mkdir(parents=True, mode=0o700)
    report = RepairReport(problem, kept=keep, quarantine=qdir)

    # Records: find where record `keep` starts, move everything from there on.
    files = segments(audit_dir)
    cut_at: tuple[Path, int] | None = None
    if keep > 0:
        upto = walk(audit_dir, None, stop_after=keep, records_only=True)
        cut_at = upto.end
    for first, path in files:
        if cut_at is not None and path.name < cut_at[0].name:
            continue
        if cut_at is not None and path == cut_at[0]:
            data = path.read_bytes()
            tail = data[cut_at[1]:]
            if tail:
                (qdir / path.name).write_bytes(tail)
                report.records_moved += tail.count(b"\n") + (not tail.endswith(b"\n"))
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.ftruncate(fd, cut_at[1])
                    os.fsync(fd)
                finally:
                    os.close(fd)
            continue
        data = path.read_bytes()
        report.records_moved += data.count(b"\n") + bool(data and not data.endswith(b"\n"))
        shutil.move(str(path), qdir / path.name)

    # Checkpoints: keep the ones that held and cover no more than what is kept.
    cp_path = audit_dir / CHECKPOINTS_FILE
    if cp_path.exists():
        lines = cp_path.read_bytes().splitlines(keepends=True)
        kept_lines = [ln for ln, cp in zip(lines, state.checkpoints) if cp.size <= keep]
        moved = lines[len(kept_lines):]
        if moved:
            (qdir / CHECKPOINTS_FILE).write_bytes(b"".join(moved))
            report.checkpoints_moved = len(moved)
            tmp = cp_path.with_name(CHECKPOINTS_FILE + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, b"".join(kept_lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, cp_path)
    fsync_dir(qdir)
    fsync_dir(audit_dir)
    if report.records_moved == 0 and report.checkpoints_moved == 0:
        raise AuditError(f"cannot repair: {problem} (nothing to set aside; see `swatch audit "
                         "verify`)")
    return report
