"""One event schema: every record type swatch writes, produced by real workloads (a traced
run, a policy's denials, a ring that overflows), validated with ``jsonschema`` against
syscall_watcher/data/schema/records.schema.json; every producer's records carry one header; the
README's field tables are the schema's; the formatter's cgroup labels have no fixed limit.

(conftest's read_events/events_until validate every record every other test reads, too.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from conftest import (RECORD_TYPES, ROOT, SCHEMA, SWATCH, check_document, parse_record,
                      read_events, run_with_stalled_consumer, swatch, wait_for, watching)

TASK_HEADER = ["type", "time_ns", "pid", "tid", "ppid", "uid", "cgroup_id", "comm"]


def _schema_tables():  # type: ignore[no-untyped-def]
    path = ROOT / "tools" / "schema_tables.py"
    spec = importlib.util.spec_from_file_location("schema_tables", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_schema_is_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)
    assert set(RECORD_TYPES) == {"syscall", "exec", "fork", "exit", "denied", "tls", "http",
                                 "llm", "step", "lost", "oom_kill", "limits", "summary",
                                 "phase"}


def test_every_task_record_has_the_same_header_in_the_schema() -> None:
    defs = SCHEMA["$defs"]
    headers = {name: {k: v for k, v in defs[name]["properties"].items()
                      if k in TASK_HEADER[1:] + ["container", "kubernetes", "step"]}
               for name in ("syscall", "exec", "fork", "exit", "denied", "tls", "http", "llm")}
    first = headers["syscall"]
    assert all(h == first for h in headers.values()), headers
    for name in RECORD_TYPES:  # every record, task or not: type and time_ns
        assert {"type", "time_ns"} <= set(defs[name]["required"]), name


def test_readme_field_tables_are_generated_from_the_schema() -> None:
    mod = _schema_tables()
    readme = (ROOT / "README.md").read_text()
    assert mod.readme_block(readme) == mod.tables(SCHEMA), \
        "README.md's JSON field tables differ from the schema: run tools/schema_tables.py --write"


def test_a_wrong_record_is_refused() -> None:
    """The validator is real: the old denial header (float `time`) and unknown fields fail."""
    good = {"type": "fork", "time_ns": 1, "pid": 1, "tid": 1, "ppid": 0, "uid": 0,
            "cgroup_id": 1, "comm": "x", "child_pid": 2}
    parse_record(json.dumps(good))
    for bad in ({**good, "time": 1.5}, {k: v for k, v in good.items() if k != "time_ns"},
                {**good, "type": "denials_lost"}, {**good, "pid": -1}):
        with pytest.raises(AssertionError):
            parse_record(json.dumps(bad))


def test_trace_records_of_every_kind(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    """A traced run with files, a socket, a fork, an exec and a death by signal: every record
    validates (read_events), and each task record type is there with the one header."""
    port, _ = listener
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(os.urandom(2000))
    out = d / "events.jsonl"
    script = f"{workload('known')} {d} {port}; /bin/true 'a b' \"$(printf '\\377')\"; kill -TERM $$"
    r = swatch("run", "--filter", "all", "--json", "-o", str(out), "--", "/bin/sh", "-c", script)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    events = read_events(out)  # each one validated against the schema
    kinds = {e["type"] for e in events}
    assert {"syscall", "exec", "fork", "exit"} <= kinds, kinds
    assert all(list(e)[:len(TASK_HEADER)] == TASK_HEADER for e in events if e["type"] != "lost")
    assert any(e["type"] == "exit" and e.get("signal") == "SIGTERM" for e in events)
    assert any(e.get("family") == "inet" and e.get("addr") == f"127.0.0.1:{port}"
               for e in events)
    assert any(e["type"] == "exec" and e["argv"][1:] == ["a b", "\udcff"] for e in events)


def test_run_summary_line_on_stderr() -> None:
    """`run --json` with the trace on stderr: every line, the summary last, is a valid record."""
    proc = swatch("run", "--json", "--", "/bin/true")
    assert proc.returncode == 0, proc.stderr
    records = [parse_record(line) for line in proc.stderr.splitlines()]
    assert records[-1]["type"] == "summary" and records[-1]["exit_code"] == 0
    assert records[-1]["events"]["written"] == len(records) - 1


def test_lost_records_when_the_ring_overflows(tmp_path: Path, workload) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "e.jsonl"
    rc, stderr = run_with_stalled_consumer(
        ["--filter", "all", "--json", "-o", str(out), "--ring-size", "16384"],
        [workload("storm"), "getppid", "20000", "gate"])
    assert rc == 0, stderr
    lost = [e for e in read_events(out) if e["type"] == "lost"]
    assert lost and all(e["ring"] == "events" for e in lost), stderr
    assert lost[-1]["total_dropped"] == sum(e["dropped"] for e in lost)


def test_denials_share_the_trace_header_and_validate(pin_dir: Path) -> None:
    """A tracer and a policy on one process: `watch --json` writes trace records and denials
    through one formatter — the same header keys, in the same order, the same time base."""
    from test_policy_enforce import Watch, gated_py, load

    ppin = Path(f"/sys/fs/bpf/swatch-test-policy-{uuid.uuid4().hex[:10]}")
    t = gated_py("open('/etc/hostname').read()\nos.execv('/bin/true', ['true'])")
    try:
        swatch("load", "--pid", str(t.pid), "--pin-dir", str(pin_dir), check=True)
        load(ppin, t, "no-exec")
        w = Watch(ppin, tracer_pin=pin_dir)
        try:
            t.go()
            w.denials()  # validated as read
        finally:
            events = w.stop()
        doc = check_document("policy_summary_doc", json.loads(
            swatch("policy-summary", "--json", "--pin-dir", str(ppin), check=True).stdout))
        assert doc["total"] == 1  # type: ignore[index]
    finally:
        swatch("policy-unload", "--pin-dir", str(ppin))
        if t.proc.poll() is None:
            t.proc.kill()
    for e in events:
        parse_record(json.dumps(e))
    denied = [e for e in events if e["type"] == "denied"]
    traced = [e for e in events if e["type"] == "syscall" and e["pid"] == t.pid]
    assert denied and traced
    assert list(denied[0])[:len(TASK_HEADER)] == TASK_HEADER
    assert list(traced[0])[:len(TASK_HEADER)] == TASK_HEADER
    assert denied[0]["pid"] == traced[0]["pid"] and denied[0]["comm"] == traced[0]["comm"]
    assert denied[0]["syscall"] == "execve" and denied[0]["nr"] > 0
    assert traced[0]["time_ns"] <= denied[0]["time_ns"]


def test_denial_ring_lost_record() -> None:
    """A policy's denial ring overflows while `watch --json` is stopped: the watch then writes a
    `lost` record with ring "denials" (it was `denials_lost`, without `time_ns`)."""
    from test_policy_enforce import Watch, gated_py, load

    ppin = Path(f"/sys/fs/bpf/swatch-test-policy-{uuid.uuid4().hex[:10]}")
    # each socket() is denied with EPERM (cgroup tier) and reported: far more than 1 MiB fits
    t = gated_py("try:\n    socket.socket()\nexcept OSError:\n    pass\nsys.stdin.readline()\n"
                 "for _ in range(20000):\n"
                 "    try:\n        socket.socket()\n    except OSError:\n        pass")
    w = None
    try:
        load(ppin, t, "no-network")
        w = Watch(ppin)
        os.write(t._w, b"go\n")  # one denial: once it is written, the watch is streaming
        assert w.denials(), "the first denial never came"
        os.kill(w.proc.pid, signal.SIGSTOP)
        try:
            os.write(t._w, b"storm\n")
            os.close(t._w)
            assert t.proc.wait(timeout=120) == 0
        finally:
            os.kill(w.proc.pid, signal.SIGCONT)
        events = wait_for(lambda: [e for e in w.events() if e["type"] == "lost"], timeout=10)
        assert events and events[0]["ring"] == "denials" and events[0]["dropped"] > 0, events
    finally:
        if w is not None:
            w.stop()
        swatch("policy-unload", "--pin-dir", str(ppin))
        if t.proc.poll() is None:
            t.proc.kill()


def test_status_and_summary_documents(pin_dir: Path) -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        swatch("load", "--pid", str(p.pid), "--pin-dir", str(pin_dir), check=True)
        w = subprocess.Popen([SWATCH, "watch", "--json", "--pin-dir", str(pin_dir),
                              "--duration", "30"], stdout=subprocess.DEVNULL)
        try:
            watching(pin_dir, w)  # status --json, validated while a consumer is attached
        finally:
            w.send_signal(signal.SIGINT)
            w.wait(timeout=15)
        for by in ("syscall", "pid", "container"):
            check_document("summary_doc", json.loads(swatch(
                "summary", "--once", "--json", "--by", by, "--pin-dir", str(pin_dir),
                check=True).stdout))
    finally:
        p.kill()
        p.wait()
    check_document("status_doc", json.loads(swatch("status", "--json", "--pin-dir",
                                                   str(pin_dir) + "-absent").stdout))


# ------------------------------------------------------------------------ cgroup labels


def test_more_than_64_cgroup_labels() -> None:
    """The formatter labels any number of cgroups (it kept 64 and dropped the rest silently):
    a real cgroup tree of 100 cgroups, labelled as `watch` labels a container's, and a record
    from each one says which container it came from, in JSON and in human lines."""
    from syscall_watcher.trace.watch import label_container_cgroups
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.kernel._libbpf import ffi, lib
    from syscall_watcher.targets.containers import cgroup_v2_root
    from syscall_watcher.trace import stream

    root = Path(cgroup_v2_root()) / f"swatch-test-labels-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    kids = [root / f"c{i:03d}" for i in range(100)]
    root.mkdir()
    try:
        for k in kids:
            k.mkdir()
        before = libbpf.cgroup_labels()
        label_container_cgroups(str(root), "container abc123 (web)")
        assert libbpf.cgroup_labels() >= before + 1  # the root, at least (re-labels count once)
        stream.setup_formatter()
        for k in [root, *kids]:
            ev = ffi.new("struct sw_fork_event *")
            ev.hdr.type = lib.SW_EV_FORK
            ev.hdr.size = ffi.sizeof("struct sw_fork_event")
            ev.hdr.pid = 4242
            ev.hdr.cgroup_id = os.stat(k).st_ino
            ev.hdr.comm = b"sh"
            recs = ffi.buffer(ev)[:]
            out = ffi.new("char[]", 1 << 16)
            for mode in (lib.SW_OUT_JSON, lib.SW_OUT_HUMAN):
                pos = ffi.new("size_t *")
                n = lib.sw_format(recs, len(recs), pos, mode, 0, out, 1 << 16)
                line = ffi.buffer(out, n)[:].decode()
                if mode == lib.SW_OUT_JSON:
                    assert parse_record(line)["container"] == "abc123 (web)", (k, line)
                else:
                    assert "[abc123 (web)] FORK" in line, (k, line)
    finally:
        for k in kids:
            if k.is_dir():
                k.rmdir()
        root.rmdir()


def test_readme_audit_tables_are_generated_from_the_audit_schema() -> None:
    from conftest import AUDIT_SCHEMA

    Draft202012Validator.check_schema(AUDIT_SCHEMA)
    mod = _schema_tables()
    readme = (ROOT / "README.md").read_text()
    assert mod.readme_block(readme, mod.AUDIT_BEGIN, mod.AUDIT_END) == \
        mod.audit_tables(AUDIT_SCHEMA), \
        "README.md's audit tables differ from audit.schema.json: run tools/schema_tables.py --write"
