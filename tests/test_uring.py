"""io_uring operations: events, in-kernel counts, SQPOLL attribution (bpf/watcher_uring.bpf.h).

A real liburing workload (tests/workloads/uring_ops.c) opens, reads, writes, closes, stats,
makes, renames and unlinks files and connects and sends through a ring, never through the
syscalls that would do the same; the tests assert what the kernel reported, field by field.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import new_pin_dir, read_events, swatch, wait_for

O_WRONLY, O_CREAT, O_TRUNC = os.O_WRONLY, os.O_CREAT, os.O_TRUNC
O_LARGEFILE = 0o100000  # io_uring's prep adds it on 64-bit kernels (force_o_largefile)
IN_TEXT = b"hello uring"  # 11 bytes
_BYTES = r"(-|[\d.]+ [KMGT]?B)"
ROW = re.compile(rf"^(io_uring:\w+)\s+([\d,]+)\s+([\d,]+)\s+{_BYTES}\s+{_BYTES}")


def _uring_events(events: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in events if e.get("via") == "io_uring"]


def _rows(table: str) -> dict[str, tuple[int, int, str, str]]:
    out = {}
    for line in table.splitlines():
        m = ROW.match(line)
        if m:
            out[m[1]] = (int(m[2].replace(",", "")), int(m[3].replace(",", "")), m[4], m[5])
    return out


def _results(stdout: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in stdout.splitlines())}


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    d = tmp_path / "w"
    d.mkdir()
    (d / "in.txt").write_bytes(IN_TEXT)
    return d


def test_uring_file_and_network_ops(work_dir: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    """Every operation of the workload is one URING event with the exact path, fd, fd name,
    bytes, error and address; none of it passed sys_enter; the summary has a row per opcode."""
    port, received = listener
    d = work_dir
    out = d.parent / "trace.jsonl"
    res_file = d.parent / "results.txt"
    proc = swatch("run", "--json", "-o", str(out), "--", "sh", "-c",
                  f"exec {workload('uring_ops')} files {d} {port} > {res_file}")
    assert proc.returncode == 0, proc.stderr
    results = _results(res_file.read_text())
    rfd, wfd = results["openat_in"], results["openat_out"]
    assert rfd >= 0 and wfd >= 0 and results["read"] == len(IN_TEXT)
    events = read_events(out)
    exec_ev = [e for e in events if e["type"] == "exec" and e["filename"].endswith("uring_ops")]
    assert len(exec_ev) == 1
    pid = exec_ev[0]["pid"]
    ur = _uring_events(events)
    got = [(e["syscall"], e["ret"]) for e in ur]
    assert got == [
        ("io_uring:openat", rfd), ("io_uring:read", 11), ("io_uring:openat", wfd),
        ("io_uring:write", 10), ("io_uring:close", 0), ("io_uring:close", 0),
        ("io_uring:openat", -2), ("io_uring:mkdirat", 0),
        ("io_uring:renameat", 0), ("io_uring:unlinkat", 0), ("io_uring:read", -9),
        ("io_uring:connect", 0), ("io_uring:send", 5)], got
    assert {(e["pid"], e["tid"], e["comm"]) for e in ur} == {(pid, pid, "uring_ops")}
    assert not any(e.get("sqpoll") for e in ur)
    # (STATX is not an event: the default profile leaves statx out, for rings as for calls;
    # it is counted all the same, below)
    (o_in, r, o_out, w, c_in, c_out, o_miss, mkd, ren, unl, bad, conn, send) = ur
    assert o_in["path"] == f"{d}/in.txt" and o_in["new_fd"] == rfd and o_in["op"] == "OPEN"
    assert o_in["args"][2] == os.O_RDONLY | O_LARGEFILE
    assert (r["fd"], r["fd_kind"], r["fd_name"], r["bytes"]) == (rfd, "file", f"{d}/in.txt", 11)
    assert o_out["path"] == f"{d}/out.txt" and o_out["args"][2] == O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE
    assert (w["fd"], w["fd_name"], w["bytes"]) == (wfd, f"{d}/out.txt", 10)
    assert (c_in["fd"], c_in["fd_name"]) == (rfd, f"{d}/in.txt")
    assert (c_out["fd"], c_out["fd_name"]) == (wfd, f"{d}/out.txt")
    assert (o_miss["path"], o_miss["error"]) == (f"{d}/missing", "ENOENT")
    assert mkd["path"] == f"{d}/sub"
    assert (ren["path"], ren["path2"]) == (f"{d}/out.txt", f"{d}/sub/moved.txt")
    assert unl["path"] == f"{d}/sub/moved.txt"
    assert (bad["fd"], bad["fd_kind"], bad["error"]) == (999, "bad", "EBADF")
    assert (conn["addr"], conn["family"], conn["fd_kind"]) == (f"127.0.0.1:{port}", "inet",
                                                               "tcp")
    assert (send["fd"], send["fd_kind"], send["bytes"]) == (conn["fd"], "tcp", 5)
    assert wait_for(lambda: received == [b"ping\n"]), received
    # none of it went through the syscalls
    sys_paths = [e.get("path", "") for e in events if e["type"] == "syscall" and "via" not in e]
    assert not [p for p in sys_paths if p.startswith(str(d))], sys_paths
    # the summary: a row per opcode, counted in the kernel (-c: every row, not the top 15)
    (d / "sub").rmdir()
    count = swatch("run", "-c", "--", workload("uring_ops"), "files", str(d), str(port))
    assert count.returncode == 0, count.stderr
    rows = _rows(count.stderr)
    assert rows == {
        "io_uring:openat": (3, 1, "-", "-"), "io_uring:read": (2, 1, "11 B", "-"),
        "io_uring:write": (1, 0, "-", "10 B"), "io_uring:close": (2, 0, "-", "-"),
        "io_uring:statx": (1, 0, "-", "-"), "io_uring:mkdirat": (1, 0, "-", "-"),
        "io_uring:renameat": (1, 0, "-", "-"), "io_uring:unlinkat": (1, 0, "-", "-"),
        "io_uring:connect": (1, 0, "-", "-"), "io_uring:send": (1, 0, "-", "5 B")}, rows


def test_uring_human_lines(work_dir: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = work_dir
    proc = swatch("run", "-e", "openat,read,connect,statx", "-o", "-", "--", workload("uring_ops"),
                  "files", str(d), str(port))
    assert proc.returncode == 0, proc.stderr
    lines = [re.sub(r"^\S+ \d+\s+\S+\s+", "", ln) for ln in proc.stdout.splitlines()
             if " URING " in ln]
    res = _results("\n".join(ln for ln in proc.stdout.splitlines()
                              if re.fullmatch(r"[a-z_]+ -?\d+", ln)))
    sock_fd = res["openat_in"]  # socket() takes the lowest free fd: the first file's, closed
    assert lines == [
        f'URING   OPENAT "{d}/in.txt" -> fd {res["openat_in"]}',
        f'URING   READ 11 bytes from "{d}/in.txt"',
        f'URING   OPENAT "{d}/out.txt" -> fd {res["openat_out"]}',
        f'URING   OPENAT "{d}/missing" -> ENOENT',
        f'URING   STATX "{d}/in.txt"',
        'URING   READ from "bad fd" -> EBADF',
        f"URING   CONNECT fd {sock_fd} -> 127.0.0.1:{port} OK"], lines


def test_uring_sqpoll_attributed_to_the_ring_owner(work_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    """On an SQPOLL ring the kernel's iou-sqp thread submits: the events name the process and
    the thread that created the ring, not the kernel thread."""
    d = work_dir
    out = d.parent / "trace.jsonl"
    proc = swatch("run", "--json", "-o", str(out), "--", workload("uring_ops"), "sqpoll", str(d))
    assert proc.returncode == 0, proc.stderr
    events = read_events(out)
    pid = next(e["pid"] for e in events if e["type"] == "exec")
    ur = _uring_events(events)
    assert [(e["syscall"], e.get("bytes")) for e in ur] == [
        ("io_uring:openat", None), ("io_uring:read", 11), ("io_uring:close", None)], ur
    assert {(e["pid"], e["tid"], e["comm"], e.get("sqpoll")) for e in ur} == {
        (pid, pid, "uring_ops", True)}
    assert ur[0]["path"] == f"{d}/in.txt" and ur[1]["fd_name"] == f"{d}/in.txt"
    count = swatch("run", "-c", "--", workload("uring_ops"), "sqpoll", str(d))
    assert count.returncode == 0, count.stderr
    rows = _rows(count.stderr)
    assert rows == {"io_uring:openat": (1, 0, "-", "-"), "io_uring:read": (1, 0, "11 B", "-"),
                    "io_uring:close": (1, 0, "-", "-")}, rows


def test_uring_pinned_summary_status_detect_metrics(work_dir: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    """A pinned tracer counts io_uring operations where summary, status, detect and serve's
    metrics read them."""
    from syscall_watcher.detect.counters import read_files, read_procs
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.kernel.libbpf import lib
    from syscall_watcher.serve.metrics import _syscall_metrics
    from syscall_watcher.trace.tracer import PinnedSession

    port, _ = listener
    pin = new_pin_dir("uring")
    try:
        swatch("load", "--comm", "uring_ops", "--pin-dir", str(pin), check=True)
        # the file-bytes counters work only while a detect run holds the lease: hold it (a
        # deadline no clock reaches) for the workload, as `swatch detect` does while it observes
        session = PinnedSession.open(pin)
        try:
            lease = libbpf.new("uint32_t *", lib.SW_DETECT_LEASE)
            session.maps["detect"].update(lease, libbpf.new("uint64_t *", 2**64 - 1))
            run = subprocess.run([workload("uring_ops"), "files", str(work_dir), str(port)],
                                 capture_output=True, text=True, timeout=30, check=False)
            session.maps["detect"].update(lease, libbpf.new("uint64_t *", 0))
        finally:
            session.close()
        assert run.returncode == 0, run.stderr
        doc = json.loads(swatch("summary", "--once", "--json", "--pin-dir", str(pin),
                                check=True).stdout)
        rows = {r["name"]: (r["count"], r["errors"], r["bytes_in"], r["bytes_out"])
                for r in doc["rows"] if r["name"].startswith("io_uring:")}
        assert rows == {
            "io_uring:openat": (3, 1, 0, 0), "io_uring:read": (2, 1, 11, 0),
            "io_uring:write": (1, 0, 0, 10), "io_uring:close": (2, 0, 0, 0),
            "io_uring:statx": (1, 0, 0, 0), "io_uring:mkdirat": (1, 0, 0, 0),
            "io_uring:renameat": (1, 0, 0, 0), "io_uring:unlinkat": (1, 0, 0, 0),
            "io_uring:connect": (1, 0, 0, 0), "io_uring:send": (1, 0, 0, 5)}, rows
        st = json.loads(swatch("status", "--json", "--pin-dir", str(pin), check=True).stdout)
        assert st["io_uring"] == {"traced": True, "submitted": 14, "completed": 14,
                                  "ops_counted": 14}
        session = PinnedSession.open(pin)
        try:
            procs = read_procs(session.processes)
            (p,) = [p for p in procs.values() if p.comm == "uring_ops"]
            # stdout is a pipe and ld.so only reads: every regular-file write and every
            # connect of the process went through the ring
            assert p.values["file_bytes_out"] == 10 and p.values["connects_tcp"] == 1
            assert [(f[0], f[1], f[2]) for f in read_files(session.maps["files_written"])
                    .values() if f[2] == "out.txt"] == [(10, 1, "out.txt")]
            metrics = {(m.name, s.labels["syscall"]): s.value
                       for m in _syscall_metrics(session.call_stats(), "t") for s in m.samples
                       if s.labels.get("syscall", "").startswith("io_uring:")
                       and s.name.endswith("_total")}
        finally:
            session.close()
        assert metrics[("swatch_syscalls", "io_uring:read")] == 2
        assert metrics[("swatch_syscall_written_bytes", "io_uring:write")] == 10
        programs = swatch("status", "--programs", "--pin-dir", str(pin), check=True).stdout
        assert "sw_uring_submit" in programs and "sw_uring_complete" in programs
    finally:
        swatch("unload", "--pin-dir", str(pin))


def test_tracepoint_check_by_name_agrees_with_btf() -> None:
    """Which io_uring programs load is decided from the names in the kernel's BTF string
    section: the same answers as libbpf's parse of the whole BTF (a typedef btf_trace_<tp>)."""
    from syscall_watcher.kernel import libbpf

    names = ("io_uring_submit_req", "io_uring_submit_sqe", "io_uring_complete", "sys_enter",
             "sched_process_fork", "swatch_no_such_tracepoint")
    strings = libbpf._vmlinux_btf_strings()
    assert strings is not None
    by_name = {n: libbpf._name_in_strings(strings, f"btf_trace_{n}".encode()) for n in names}
    btf = libbpf.lib.btf__load_vmlinux_btf()
    assert btf != libbpf.ffi.NULL
    try:
        by_type = {n: libbpf.lib.btf__find_by_name_kind(btf, f"btf_trace_{n}".encode(),
                                                         libbpf._BTF_KIND_TYPEDEF) > 0
                   for n in names}
    finally:
        libbpf.lib.btf__free(btf)
    assert by_name == by_type
    assert by_type["sys_enter"] and not by_type["swatch_no_such_tracepoint"]
