"""`swatch summary`: counts kept in the kernel, exact."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import check_document, run_with_stalled_consumer, swatch


def _held_counts(workload, n: int, m: int, k: int) -> subprocess.Popen:  # type: ignore[no-untyped-def,type-arg]
    return subprocess.Popen([workload("counts"), str(n), str(m), str(k)],
                            stdin=subprocess.PIPE)


@pytest.mark.parametrize("n,m,k", [(1000, 4096, 37), (5, 1, 0)])
def test_exact_counts_bytes_errors(pin_dir: Path, workload, n: int, m: int, k: int) -> None:  # type: ignore[no-untyped-def]
    p = _held_counts(workload, n, m, k)
    try:
        swatch("load", "--pid", str(p.pid), "--pin-dir", str(pin_dir), check=True)
        assert p.stdin is not None
        p.stdin.write(b"g")
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()
    doc: dict = check_document("summary_doc", json.loads(  # type: ignore[assignment,type-arg]
        swatch("summary", "--once", "--json", "--pin-dir", str(pin_dir), check=True).stdout))
    rows = {r["name"]: r for r in doc["rows"]}
    # The read() it was blocked in began before load, so it is not counted: exactly n.
    assert rows["read"]["count"] == n
    assert rows["read"]["bytes_in"] == n * m
    assert rows["read"]["errors"] == 0
    assert rows["openat"]["count"] == k + 1  # + /dev/zero
    assert rows["openat"]["errors"] == k
    assert rows["read"]["p99_ns"] >= rows["read"]["p50_ns"] > 0
    assert doc["total"]["count"] == sum(r["count"] for r in doc["rows"])
    assert doc["processes"] == 1

    by_pid: dict = check_document("summary_doc", json.loads(  # type: ignore[assignment,type-arg]
        swatch("summary", "--once", "--json", "--by", "pid", "--pin-dir", str(pin_dir),
               check=True).stdout))
    assert [(r["pid"], r["name"], r["bytes_in"]) for r in by_pid["rows"]] == [
        (p.pid, "counts", n * m)]

    table = swatch("summary", "--once", "--pin-dir", str(pin_dir), check=True).stdout
    assert re.search(rf"^read\s+{n:,}\s+0\s", table, re.M), table
    assert re.search(rf"^openat\s+{k + 1:,}\s+{k:,}\s", table, re.M), table
    assert "TOTAL" in table and f"pid {p.pid}" in table


def test_top_and_sort(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    p = _held_counts(workload, 50, 10, 80)
    swatch("load", "--pid", str(p.pid), "--pin-dir", str(pin_dir), check=True)
    assert p.stdin is not None
    p.stdin.write(b"g")
    p.stdin.close()
    p.wait(timeout=30)
    doc = json.loads(swatch("summary", "--once", "--json", "--top", "1", "--sort", "errors",
                            "--pin-dir", str(pin_dir), check=True).stdout)
    assert [(r["name"], r["errors"]) for r in doc["rows"]] == [("openat", 80)]


def test_counts_exact_while_ring_overflows(pin_dir: Path, workload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    calls = 200_000
    rc, stderr = run_with_stalled_consumer(
        ["--filter", "all", "--json", "-o", str(tmp_path / "e.jsonl"), "--ring-size", "8192"],
        [workload("storm"), "getppid", str(calls), "gate"])
    assert rc == 0, stderr
    m = re.search(r"dropped=(\d+)", stderr)
    assert m and int(m.group(1)) > 0, stderr
    assert re.search(rf"^getppid\s+{calls:,}\s+0\s", stderr, re.M), stderr


@pytest.mark.parametrize("args,needle", [
    (["--by", "thread"], "--by 'thread'"),
    (["--sort", "size"], "--sort 'size'"),
])
def test_summary_bad_options(pin_dir: Path, args: list[str], needle: str) -> None:
    r = swatch("summary", "--once", *args, "--pin-dir", str(pin_dir))
    assert r.returncode == 1 and needle in r.stderr


def test_summary_nothing_loaded(pin_dir: Path) -> None:
    r = swatch("summary", "--once", "--pin-dir", str(pin_dir))
    assert r.returncode == 1 and "nothing is loaded" in r.stderr
