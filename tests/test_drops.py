"""Overflow the ring buffer on purpose: every missing event is counted."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import read_events, swatch


def test_storm_drops_are_accounted_exactly(tmp_path: Path, workload) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "storm.jsonl"
    calls = 300_000
    proc = swatch("run", "--filter", "all", "--json", "-o", str(out), "--ring-size", "16384",
                  "--", workload("storm"), "getppid", str(calls))
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"events delivered=(\d+) dropped=(\d+) emitted=(\d+)", proc.stderr)
    assert m, proc.stderr
    delivered, dropped, emitted = map(int, m.groups())
    assert dropped > 0, "a 16 KiB ring should overflow under this storm"
    assert emitted == delivered + dropped
    ev = read_events(out)
    lost = [e for e in ev if e["type"] == "lost"]
    events = [e for e in ev if e["type"] != "lost"]
    assert len(events) == delivered
    assert sum(e["dropped"] for e in lost) == dropped
    assert "events dropped (ring buffer full)" in proc.stderr
    # Counting happens in the kernel whatever the ring does: exact.
    getppid = [e for e in events if e.get("syscall") == "getppid"]
    assert len(getppid) <= calls
    assert re.search(rf"^getppid\s+{calls:,}\s", proc.stderr, re.M), proc.stderr
