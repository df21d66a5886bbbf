"""The benchmark harness reads what swatch prints today: real `swatch run`/`load`/`summary` runs
through bench/'s own setups, checked against what the workloads did (no timings asserted: speed
is bench/'s business, these check that its figures are read correctly)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SWATCH, new_pin_dir, swatch

sys.path.insert(0, str(ROOT))

from bench import peers, report, runner, workloads  # noqa: E402
from bench.setups import (BSwatch, SwatchPinned, SwatchPinnedNoLatency, SwatchStats,  # noqa: E402
                          SwatchStatsNoLatency, SwatchStream, Tools)
from bench.trial import TrialRunner  # noqa: E402


@pytest.fixture(scope="module")
def tools() -> Tools:
    workloads.build()
    return Tools({"swatch": SWATCH})


@pytest.fixture
def trials():  # type: ignore[no-untyped-def]
    pin_dir = new_pin_dir("bench")
    t = TrialRunner(quick=True, pin_dir=str(pin_dir), tmp="/dev/shm", keep_tmp=False)
    yield t
    swatch("unload", "--pin-dir", str(pin_dir))
    shutil.rmtree(t.base, ignore_errors=True)
    assert not pin_dir.exists()  # (conftest checks that no program is left loaded)


@pytest.mark.parametrize("setup", [SwatchStats, SwatchStatsNoLatency])
def test_stats_only_children_from_the_json_summary(tools: Tools, trials: TrialRunner,
                                                   setup: type[SwatchStats]) -> None:
    """`swatch run --stats-only --json` (and with --no-latency): children seen = the summary's
    processes - 1 (the human title says "51 processes", which the old regex, "process(es)",
    never matched)."""
    wl = workloads.BY_NAME["forkexec"]
    rec = trials.run(setup(tools), wl, argv=wl.argv_n(7, trials.base))
    assert "error" not in rec, rec
    assert rec["result"]["calls"] == 7
    assert rec["children_seen"] == 7
    assert rec["counted_processes"] == 8
    assert rec["counted_syscalls"] > 7 * 2  # each child at least execve and exit_group


def test_streaming_records_match_the_summary(tools: Tools, trials: TrialRunner) -> None:
    """`swatch run --json` to a file: the records in it are what its summary line says it
    delivered, and emitted = delivered + dropped."""
    wl = workloads.BY_NAME["read"]
    rec = trials.run(SwatchStream(tools), wl, argv=wl.argv_n(3000, trials.base))
    assert "error" not in rec, rec
    assert rec["delivered"] == rec["jsonl_lines"] >= 3000
    assert rec["emitted"] == rec["delivered"] + rec["dropped"]
    assert rec["dropped"] == rec["lost_records"] == 0
    assert "non_json_lines" not in rec


@pytest.mark.parametrize("setup", [SwatchPinned, SwatchPinnedNoLatency])
def test_pinned_counts_the_storms_own_syscall_exactly(tools: Tools, trials: TrialRunner,
                                                      setup: type[SwatchPinned]) -> None:
    """`swatch load --pid` (and with --no-latency) on the held storm, read with `swatch summary
    --json`: exactly the loop's getppid calls, and the tracer is gone afterwards."""
    wl = workloads.BY_NAME["getppid"]
    rec = trials.run(setup(tools, trials.pin_dir), wl, argv=wl.argv_n(4321, trials.base))
    assert "error" not in rec, rec
    assert rec["counted_own_syscall"] == 4321
    assert rec["own_syscall_missed"] == 0
    assert rec["counted_processes"] == 1
    assert not Path(trials.pin_dir).exists()


@pytest.mark.parametrize("no_latency", [False, True])
def test_bystander_is_not_counted(tools: Tools, trials: TrialRunner, no_latency: bool) -> None:
    """swatch loaded on a sleeping pid counts none of the bystander's calls (summary --json)."""
    tr = BSwatch("swatch", tools, trials.env(), trials.ready_timeout, pin_dir=trials.pin_dir,
                 filter_all=not no_latency, no_latency=no_latency)
    rec = runner._bystander_once(trials, tr)
    assert "error" not in rec, rec
    assert rec["result"]["calls"] == workloads.BY_NAME["getppid"].size(True, False)
    assert rec["counted_syscalls"] < 100  # a sleeping `sleep` makes next to none
    assert not Path(trials.pin_dir).exists()


def test_a_missing_peer_is_skipped_and_named(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """No peer on PATH: each is named once with its Debian package, its setups are skipped
    (not failed), and nothing is installed."""
    old = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)  # an empty directory
    try:
        found, _notes, _versions = peers.find_tools(SWATCH)
    finally:
        os.environ["PATH"] = old
    assert found.bins["strace"] is None and found.bins["bpftrace"] is None
    err = capsys.readouterr().err
    assert ("peers: strace skipped: strace is not installed (Debian package strace; "
            "`sudo make bench-deps` installs the peers)") in err
    assert "Debian package bpftrace" in err
    assert peers.StraceF(found).unavailable() == found.missing["strace"]
    summary = runner.summarize([{"skipped": found.missing["strace"]}] * 2, None)
    assert summary["status"] == "skipped"
    assert summary["reason"].startswith("skipped: strace is not installed")


def test_results_md_says_not_run_for_setups_left_out() -> None:
    """results.md: a setup the run left out (--setups) is not called failed; a row no column
    ran is left out and named once; a setup that ran and failed still says so."""
    ok = {"status": "ok", "median_ns_per_call": 500.0, "vs_untraced": 1.25}
    base = {"status": "ok", "median_ns_per_call": 400.0, "vs_untraced": 1.0}
    failed = runner.summarize([{"error": "boom"}] * 2, None)
    res = {"meta": {"date": "d", "cpus": 2, "kernel": "k", "runs_per_setup": 1},
           "workloads": {
               "read": {"summary": {"untraced": base, "swatch stats": ok,
                                    "syscount -p": failed}},
               "getppid": {"summary": {"untraced": base, "swatch stats": ok}}}}
    md = report.markdown(res)
    assert "| **swatch, stats only** | 500 (1.25×) | 500 (1.25×) |" in md
    assert "| libbpf-tools `syscount -p` | failed | not run |" in md
    assert "`perf trace`" not in md.split("Not run")[0]
    assert "Not run (`--setups`): `swatch load --pid`," in md
    assert "`syscount -p`," not in md.split("Not run")[1]
