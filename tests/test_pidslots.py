"""Per-process counts through bounded slots (bpf/watcher.bpf.c, trace/pidstats.py): a slot is
given back when its process exits and taken by the next one, a process that finds none is
counted in the shared table — and every count stays exact and with its own process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import swatch

CHILDREN = 12
READ_SIZE = 4096


def _run_children(pin_dir: Path, workload, slots: int) -> dict[int, dict]:  # type: ignore[no-untyped-def,type-arg]
    """A traced shell runs CHILDREN `counts` one after another, child i doing i reads of
    READ_SIZE bytes and i failed opens; their rows of `summary --by pid`."""
    script = (f'read go; i=0; while [ "$i" -lt {CHILDREN} ]; do {workload("counts")} "$i" '
              f'{READ_SIZE} "$i" </dev/zero || exit 9; i=$((i+1)); done')
    sh = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE)
    try:
        swatch("load", "--pid", str(sh.pid), "--stats-slots", str(slots), "--pin-dir",
               str(pin_dir), check=True)
        assert sh.stdin is not None
        sh.stdin.write(b"g\n")
        sh.stdin.close()
        assert sh.wait(timeout=60) == 0
    finally:
        sh.kill()
    doc = json.loads(swatch("summary", "--once", "--json", "--by", "pid", "--pin-dir",
                            str(pin_dir), check=True).stdout)
    return {r["pid"]: r for r in doc["rows"]}


def _assert_each_child_exact(rows: dict[int, dict]) -> None:  # type: ignore[type-arg]
    """Child i's row is the first child's plus exactly i reads of READ_SIZE bytes and i failed
    opens: a count added to the wrong process (a slot's previous or next holder) breaks it."""
    kids = [r for r in rows.values() if r["name"] == "counts"]
    assert len(kids) == CHILDREN, rows
    base_in = min(r["bytes_in"] for r in kids)
    base_err = min(r["errors"] for r in kids)
    base_count = min(r["count"] for r in kids)
    extra = sorted(((r["bytes_in"] - base_in) // READ_SIZE, r["errors"] - base_err,
                    r["count"] - base_count, (r["bytes_in"] - base_in) % READ_SIZE)
                   for r in kids)
    assert extra == [(i, i, 2 * i, 0) for i in range(CHILDREN)], extra


def test_slots_reused_counts_exact(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    # Two slots: the shell keeps one, the children take the other in turn (given back at
    # each exit, the next generation for the next child).
    rows = _run_children(pin_dir, workload, slots=2)
    _assert_each_child_exact(rows)
    status = json.loads(swatch("status", "--json", "--pin-dir", str(pin_dir), check=True).stdout)
    assert status["pid_slots"] == 2
    assert status["pid_slots_full"] == 0  # every child found the slot its predecessor gave back
    text = swatch("status", "--pin-dir", str(pin_dir), check=True).stdout
    assert "2 slots counted per CPU" in text, text


def test_no_free_slot_counts_exact_and_said(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    # One slot, held by the shell: every child is counted in the shared table.
    rows = _run_children(pin_dir, workload, slots=1)
    _assert_each_child_exact(rows)
    status = json.loads(swatch("status", "--json", "--pin-dir", str(pin_dir), check=True).stdout)
    assert status["pid_slots_full"] == CHILDREN
    table = swatch("summary", "--once", "--pin-dir", str(pin_dir), check=True).stdout
    assert f"{CHILDREN} processes counted without a slot (all 1 taken; --stats-slots)" in table


def test_no_slots_at_all(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    rows = _run_children(pin_dir, workload, slots=0)
    _assert_each_child_exact(rows)
    assert [r["name"] for r in rows.values()].count("sh") == 1


@pytest.mark.parametrize("args,needle", [
    (["--stats-slots", "-1"], "--stats-slots -1: choose 0 to"),
    (["--max-pids", "100", "--stats-slots", "101"], "--stats-slots 101: choose 0 to 100"),
])
def test_bad_stats_slots(pin_dir: Path, args: list[str], needle: str) -> None:
    r = swatch("load", *args, "--pin-dir", str(pin_dir))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swatch: error: ") and needle in lines[0], \
        r.stderr
    assert not pin_dir.exists() or not any(pin_dir.iterdir())


def test_snapshots_during_slot_churn(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    """Read the per-process counts over and over while 40 processes take and give back two
    slots: a child's count never goes down from one read to the next and never exceeds its
    final count (a slot's next holder counted as its previous one, or a process counted both
    in its slot and in pid_done, would), and every child ends with the same exact count."""
    from syscall_watcher.trace.tracer import PinnedSession

    kids, calls = 40, 3000
    script = (f'read go; i=0; while [ "$i" -lt {kids} ]; do {workload("storm")} getppid '
              f'{calls} || exit 9; i=$((i+1)); done')
    sh = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE)
    seen: dict[int, list[int]] = {}
    try:
        swatch("load", "--pid", str(sh.pid), "--stats-slots", "2", "--pin-dir", str(pin_dir),
               check=True)
        session = PinnedSession.open(pin_dir)
        try:
            assert sh.stdin is not None
            sh.stdin.write(b"g\n")
            sh.stdin.close()
            reads = 0
            while sh.poll() is None or reads == 0:
                for pid, pc in session.processes().items():
                    if pc.comm == "storm":
                        seen.setdefault(pid, []).append(pc.values["count"])
                reads += 1
            final = {pid: pc.values["count"] for pid, pc in session.processes().items()
                     if pc.comm == "storm"}
        finally:
            session.close()
        assert sh.wait(timeout=60) == 0
    finally:
        sh.kill()
    assert len(final) == kids, final
    assert len(set(final.values())) == 1, final  # the same program, the same calls
    assert reads > kids, reads  # the reads overlapped the churn
    for pid, counts in seen.items():
        assert counts == sorted(counts), (pid, counts)
        assert counts[-1] <= final[pid], (pid, counts, final[pid])
