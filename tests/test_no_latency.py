"""--no-latency: counting at sys_exit alone (no sys_enter program, no clock read), every counter
but the latency exact, the latency reported as not measured (null, "-"), never as 0."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import blocked_reading, check_document, check_record, new_pin_dir, swatch


def _tracer_programs(pin_dir: Path) -> tuple[set[str], set[str]]:
    """(names of the loaded programs of the tracer pinned in pin_dir, names of those of them
    attached by a link), from the kernel's own lists: a program is the tracer's when it uses the
    tracer's pinned `stats` map."""
    def bpftool(*args: str):  # type: ignore[no-untyped-def]
        return json.loads(subprocess.run(["bpftool", "-j", *args], capture_output=True,
                                         text=True, check=True).stdout or "[]")

    stats_id = bpftool("map", "show", "pinned", str(pin_dir / "maps" / "stats"))["id"]
    progs = {p["id"]: p.get("name", "") for p in bpftool("prog", "show")
             if stats_id in p.get("map_ids", [])}
    linked = {progs[link["prog_id"]] for link in bpftool("link", "show")
              if link.get("prog_id") in progs}
    return set(progs.values()), linked


def _table_rows(text: str) -> dict[str, list[str]]:
    """A summary table's rows (not TOTAL): name -> its columns after the name."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_0-9]+)\s+(\d[\d,]*)\s+(\d[\d,]*)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = [m.group(2), m.group(3), *m.group(4).split()]
    return rows


def test_load_counts_exact_latency_not_measured_no_enter_program(workload) -> None:  # type: ignore[no-untyped-def]
    """`load --pid --no-latency`: exact counts, bytes and errors per syscall and per process;
    the latency null in JSON and "-" in the table; sw_sys_enter neither loaded nor linked;
    events cannot be watched; unload leaves nothing (the fixture checks the program list)."""
    n, m, k = 1000, 4096, 37
    pins = new_pin_dir("nolat")
    p = subprocess.Popen([workload("counts"), str(n), str(m), str(k)], stdin=subprocess.PIPE)
    try:
        blocked_reading(p.pid)
        out = swatch("load", "--pid", str(p.pid), "--no-latency", "--pin-dir", str(pins),
                     check=True).stdout
        assert "counting only" in out, out
        progs, linked = _tracer_programs(pins)
        assert "sw_sys_exit" in linked and "sw_sys_exit" in progs
        assert "sw_sys_enter" not in progs and "sw_sys_enter" not in linked, (progs, linked)
        assert not (pins / "links" / "sys_enter").exists()
        status: dict = check_document("status_doc", json.loads(  # type: ignore[assignment,type-arg]
            swatch("status", "--json", "--pin-dir", str(pins), check=True).stdout))
        assert status["latency_measured"] is False
        assert "latency not measured" in swatch("status", "--pin-dir", str(pins),
                                                check=True).stdout
        # nothing to stream: watch says so in one line and leaves the tracer as it was
        w = swatch("watch", "--pin-dir", str(pins), "--duration", "1")
        assert w.returncode != 0 and "--no-latency" in w.stderr
        assert len(w.stderr.strip().splitlines()) == 1, w.stderr
        assert p.stdin is not None
        p.stdin.write(b"g")
        p.stdin.close()
        assert p.wait(timeout=30) == 0

        doc: dict = check_document("summary_doc", json.loads(  # type: ignore[assignment,type-arg]
            swatch("summary", "--once", "--json", "--pin-dir", str(pins), check=True).stdout))
        rows = {r["name"]: r for r in doc["rows"]}
        # Counted at its exit: the read it was blocked in when loaded ended while loaded, so it
        # is counted (1 byte, "g") with the n reads of m bytes (the default: n, README).
        assert (rows["read"]["count"], rows["read"]["bytes_in"], rows["read"]["errors"]) == (
            n + 1, n * m + 1, 0)
        assert (rows["openat"]["count"], rows["openat"]["errors"]) == (k + 1, k)
        assert doc["latency_measured"] is False and doc["total"]["total_ns"] is None
        for r in doc["rows"]:
            assert (r["total_ns"], r["avg_ns"], r["p50_ns"], r["p99_ns"]) == (None,) * 4, r
        assert doc["total"]["count"] == sum(r["count"] for r in doc["rows"])
        by_pid: dict = check_document("summary_doc", json.loads(  # type: ignore[assignment,type-arg]
            swatch("summary", "--once", "--json", "--by", "pid", "--pin-dir", str(pins),
                   check=True).stdout))
        assert [(r["pid"], r["name"], r["count"], r["bytes_in"], r["errors"], r["total_ns"],
                 r["avg_ns"]) for r in by_pid["rows"]] == [
            (p.pid, "counts", doc["total"]["count"], n * m + 1, k, None, None)]
        table = swatch("summary", "--once", "--pin-dir", str(pins), check=True).stdout
        assert _table_rows(table)["read"][-3:] == ["-", "-", "-"], table
        assert re.search(rf"^read\s+{n + 1:,}\s+0\s", table, re.M), table
        bad = swatch("summary", "--once", "--sort", "p99", "--pin-dir", str(pins))
        assert bad.returncode != 0 and "--no-latency" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    finally:
        p.kill()
        p.wait()
        swatch("unload", "--pin-dir", str(pins))
    assert not pins.exists()


def _pinned_counts(pins: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """Per syscall {name: (count, errors, bytes_in, bytes_out)} and per process {comm: (count,
    errors, bytes_in, bytes_out, connects_tcp)} of the tracer pinned in pins."""
    from syscall_watcher.trace.tracer import PinnedSession

    doc = json.loads(swatch("summary", "--once", "--json", "--pin-dir", str(pins),
                            check=True).stdout)
    calls = {r["name"]: (r["count"], r["errors"], r["bytes_in"], r["bytes_out"])
             for r in doc["rows"]}
    s = PinnedSession.open(pins)
    try:
        procs = {pc.comm: tuple(pc.values[f] for f in ("count", "errors", "bytes_in",
                                                        "bytes_out", "connects_tcp"))
                 for pc in s.processes().values()}
    finally:
        s.close()
    return calls, procs


def test_same_counts_as_the_default_but_the_latency(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    """The known workload (file I/O, a failed open, a TCP connect, a fork + exec of a child)
    traced by `load --pid` with and without --no-latency: every count, error and byte per
    syscall and per process the same, the child's return from fork not counted as a clone
    of its own, detect's connect counter the same; but for the read the held shell was blocked
    in when the tracer loaded, which --no-latency counts at its exit (1 call, 1 byte)."""
    port, _ = listener
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(os.urandom(2000))
    seen = {}
    for mode in ([], ["--no-latency"]):
        pins = new_pin_dir("nolat")
        # sh reads "g\n" a byte a call, then becomes the workload (same pid)
        p = subprocess.Popen(["sh", "-c", 'read x; exec "$0" "$@"', workload("known"), str(d),
                              str(port)], stdin=subprocess.PIPE)
        try:
            blocked_reading(p.pid)
            swatch("load", "--pid", str(p.pid), *mode, "--pin-dir", str(pins), check=True)
            assert p.stdin is not None
            p.stdin.write(b"g\n")
            p.stdin.close()
            assert p.wait(timeout=30) == 3  # known's own exit code
            seen[bool(mode)] = _pinned_counts(pins)
        finally:
            p.kill()
            p.wait()
            swatch("unload", "--pin-dir", str(pins))
        assert not pins.exists()
    (calls, procs), (nl_calls, nl_procs) = seen[False], seen[True]
    c, e, bi, bo = calls["read"]
    assert nl_calls.pop("read") == (c + 1, e, bi + 1, bo)
    calls.pop("read")
    assert nl_calls == calls
    assert calls["clone"][0] == 1 or calls.get("clone3", (0,))[0] == 1, calls
    c, e, bi, bo, tcp = procs["known"]
    assert nl_procs.pop("known") == (c + 1, e, bi + 1, bo, tcp)
    procs.pop("known")
    assert nl_procs == procs and set(procs) == {"true"}
    assert tcp == 1


def test_run_count_only(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    """`run -c --no-latency`: the same table as `run -c` from CMD's exec on (the held child's
    wait for its release is not counted), every latency column "-", said once; with --json the
    summary line says latency_measured false."""
    port, _ = listener
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(os.urandom(2000))
    argv = [workload("known"), str(d), str(port)]
    default = swatch("run", "-c", "--", *argv)
    nolat = swatch("run", "-c", "--no-latency", "--", *argv)
    assert default.returncode == nolat.returncode == 3, (default.stderr, nolat.stderr)
    rows, nl_rows = _table_rows(default.stderr), _table_rows(nolat.stderr)
    assert rows and {k: v[:2] for k, v in nl_rows.items()} == {k: v[:2] for k, v in rows.items()}
    assert rows["execve"][:2] == ["2", "0"], default.stderr
    assert all(v[-3:] == ["-", "-", "-"] for v in nl_rows.values()), nolat.stderr
    assert all(v[-1] != "-" for v in rows.values()), default.stderr
    assert "2 processes" in nolat.stderr and "latency not measured" in nolat.stderr
    j = swatch("run", "-c", "--no-latency", "--json", "--", *argv)
    s = check_record(json.loads(j.stderr.strip().splitlines()[-1]))
    assert s["type"] == "summary" and s["latency_measured"] is False
    assert s["syscalls"] == sum(int(v[0].replace(",", "")) for v in rows.values())
    assert check_record(json.loads(swatch("run", "-c", "--json", "--", *argv)
                                   .stderr.strip().splitlines()[-1]))["latency_measured"] is True


def test_bad_combinations_one_line_nothing_loaded(tmp_path: Path) -> None:
    """--no-latency with a stream, or with the options that choose events: one line, non-zero,
    nothing loaded (the fixture checks the kernel's program list)."""
    pins = new_pin_dir("nolat")
    for args, needle in [
        (["run", "--no-latency", "--", "/bin/true"], "--count/-c"),
        (["run", "--no-latency", "--json", "-o", str(tmp_path / "x"), "--", "/bin/true"],
         "--count/-c"),
        (["load", "--pid", str(os.getpid()), "--no-latency", "--filter", "all", "--pin-dir",
          str(pins)], "--filter"),
        (["load", "--pid", str(os.getpid()), "--no-latency", "--failed", "--pin-dir",
          str(pins)], "--failed"),
    ]:
        r = swatch(*args)
        assert r.returncode != 0 and needle in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert not pins.exists()
    assert not (tmp_path / "x").exists()


def test_rt_sigreturn_counted_as_by_the_default() -> None:
    """rt_sigreturn restores the registers, orig_ax (the number at sys_exit) to -1: counted
    all the same, as the default counts it from its sys_enter."""
    script = "trap : USR1; kill -USR1 $$; kill -USR1 $$; kill -USR1 $$"
    default = swatch("run", "-c", "--", "sh", "-c", script)
    nolat = swatch("run", "-c", "--no-latency", "--", "sh", "-c", script)
    assert default.returncode == nolat.returncode == 0, (default.stderr, nolat.stderr)
    rows, nl_rows = _table_rows(default.stderr), _table_rows(nolat.stderr)
    assert rows["rt_sigreturn"][:2] == ["3", "0"], default.stderr
    assert nl_rows["rt_sigreturn"][:2] == rows["rt_sigreturn"][:2], nolat.stderr
    assert {k: v[:2] for k, v in nl_rows.items()} == {k: v[:2] for k, v in rows.items()}
