"""`swatch serve`: /metrics scraped by a real Prometheus server, the JSON-lines log (rotation by
rename, SIGHUP, restart without duplicates), following loads and unloads, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import SWATCH, new_pin_dir, parse_record, read_audit, swatch, wait_for
from syscall_watcher.serve.jsonlog import RotatingJsonLog
from test_steps import conversation, model  # noqa: F401 (fixtures: the agent loop, the model)

PROMETHEUS = "/usr/bin/prometheus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_serve(err: Path, *args: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen([SWATCH, "serve", *args], stdout=subprocess.DEVNULL,
                            stderr=err.open("w"))


def _said(err: Path, text: str, times: int = 1, timeout: float = 15) -> bool:
    return bool(wait_for(lambda: err.read_text().count(text) >= times, timeout=timeout))


def _end(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:  # type: ignore[type-arg]
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _held_counts(workload, n: int, m: int, k: int) -> subprocess.Popen:  # type: ignore[no-untyped-def,type-arg]
    return subprocess.Popen([workload("counts"), str(n), str(m), str(k)], stdin=subprocess.PIPE)


def _release(p: subprocess.Popen) -> None:  # type: ignore[type-arg]
    assert p.stdin is not None
    p.stdin.write(b"g")
    p.stdin.close()
    assert p.wait(timeout=30) == 0


@pytest.fixture
def policy_pin_dir():  # type: ignore[no-untyped-def]
    d = new_pin_dir("policy")
    yield d
    subprocess.run([SWATCH, "policy-unload", "--pin-dir", str(d)], capture_output=True)
    assert not d.exists(), f"{d} left behind"


class Prometheus:
    """A real Prometheus server on 127.0.0.1 scraping serve every second."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = _free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n"
            "scrape_configs:\n  - job_name: swatch\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> list[dict]:  # type: ignore[type-arg]
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def value(self, promql: str) -> float:
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # by its pid (Popen)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_prometheus_reads_the_kernels_counts(pin_dir: Path, policy_pin_dir: Path, workload,  # type: ignore[no-untyped-def]
                                             tmp_path: Path) -> None:
    from test_policy_enforce import gated_py

    from syscall_watcher.serve.scores import publish

    n, m, k = 300, 512, 23
    p = _held_counts(workload, n, m, k)
    serve_port = _free_port()
    err = tmp_path / "serve.err"
    serve = prom = None
    # `swatch detect` publishes its last score per target through scores.publish (the file
    # serve reads at each scrape); written here directly, as detect would.
    detect_dir = tmp_path / "detect"
    publish(detect_dir, "pid 4242", 0.375)
    publish(detect_dir, "cgroup /agents/a", 2.5)
    (detect_dir / "junk.json").write_text("{not json")
    os.environ["SWATCH_POLICY_TIER"] = "cgroup"
    try:
        denied = gated_py("for _ in range(11):\n    try:\n        socket.socket()\n"
                          "    except OSError:\n        pass\n")
        swatch("policy-load", "--pid", str(denied.pid), "--policy", "no-network", "--pin-dir",
               str(policy_pin_dir), check=True)
    finally:
        del os.environ["SWATCH_POLICY_TIER"]
    try:
        assert denied.go()[0] == 0
        swatch("load", "--pid", str(p.pid), "--pin-dir", str(pin_dir), check=True)
        serve = _start_serve(err, "--pin-dir", str(pin_dir), "--policy-pin-dir",
                             str(policy_pin_dir), "--metrics", f"127.0.0.1:{serve_port}",
                             "--audit-dir", str(tmp_path / "audit"), "--detect-dir",
                             str(detect_dir))
        assert _said(err, "attached to the tracer"), err.read_text()
        prom = Prometheus(tmp_path, serve_port)
        assert wait_for(prom.ready, timeout=30), prom.log.read_text()[-2000:]
        _release(p)
        done_s = time.time()
        # Wait for a scrape taken after the workload ended (Prometheus's own timestamp).
        assert wait_for(lambda: any(float(r["value"][1]) > done_s + 0.1 for r in prom.query(
            'timestamp(swatch_syscalls_total{syscall="read"})')), timeout=30), \
            (prom.query('up'), _scrape_text(serve_port), err.read_text())

        from syscall_watcher.trace.tracer import PinnedSession
        session = PinnedSession.open(pin_dir)
        try:
            stats = {s: v for s, v in session.syscall_stats().items()}
        finally:
            session.close()
        from syscall_watcher.kernel import syscalls
        by_name = {syscalls.names()[nr]: v for nr, v in stats.items()}
        read, openat = by_name["read"], by_name["openat"]
        # The kernel's counts are what the workload did (test_summary checks them the same way)
        assert (read["count"], read["bytes_in"], openat["count"], openat["errors"]) == (
            n, n * m, k + 1, k)
        # ... and Prometheus holds exactly the kernel's counts.
        sel = f'syscall="read",target="pid {p.pid}"'
        assert prom.value(f"swatch_syscalls_total{{{sel}}}") == n
        assert prom.value(f"swatch_syscall_read_bytes_total{{{sel}}}") == n * m
        assert prom.value(f"swatch_syscall_errors_total{{{sel}}}") == 0
        assert prom.value('swatch_syscall_errors_total{syscall="openat"}') == k
        assert prom.value('swatch_syscalls_total{syscall="openat"}') == k + 1
        assert prom.value("sum(swatch_syscalls_total)") == sum(v["count"] for v in stats.values())
        assert prom.value('swatch_syscall_duration_seconds_count{syscall="read"}') == n
        assert prom.value('swatch_syscall_duration_seconds_sum{syscall="read"}') == pytest.approx(
            read["total_ns"] / 1e9)
        buckets = {float(r["metric"]["le"]): float(r["value"][1]) for r in prom.query(
            'swatch_syscall_duration_seconds_bucket{syscall="read"}')}
        cumulative = 0
        for b, count in enumerate(read["hist"]):  # bucket b: [2^b, 2^(b+1)) ns
            cumulative += count
            assert buckets[(1 << (b + 1)) / 1e9] == cumulative, b
        assert buckets[float("inf")] == n
        # A quantile Prometheus computes lies in the kernel's bucket for it.
        p50 = prom.value('histogram_quantile(0.5, swatch_syscall_duration_seconds_bucket'
                         '{syscall="read"})')
        assert 0 < p50 <= (1 << len(read["hist"])) / 1e9
        assert prom.value("swatch_tracer_loaded") == 1
        assert prom.value("swatch_process_resident_memory_bytes") > 0
        assert prom.value("swatch_process_cpu_seconds_total") > 0
        assert prom.value('up{job="swatch"}') == 1
        # Denials per operation and tier, and the denial ring's emitted/delivered/dropped,
        # are the kernel's counts (serve took all 11 off the ring into its audit log).
        from syscall_watcher.policy.enforcer import PinnedPolicy
        policy = PinnedPolicy.open(policy_pin_dir)
        try:
            counts = policy.counts()
        finally:
            policy.close()
        assert counts.by_op["socket"] == 11 and counts.emitted == 11 and counts.dropped == 0
        assert prom.value('swatch_denials_total{operation="socket",tier="cgroup"}') == 11
        assert prom.value('swatch_events_emitted_total{type="denial"}') == 11
        assert prom.value('swatch_events_dropped_total{type="denial"}') == 0
        assert prom.value('swatch_events_delivered_total{type="denial"}') == 11
        assert prom.value('swatch_policy_loaded{policy="no-network"}') == 1
        # The tracer's ring per record type (serve does not stream it: nothing asked for it)
        emitted = {r["metric"]["type"]: float(r["value"][1])
                   for r in prom.query("swatch_events_emitted_total")}
        assert set(emitted) >= {"syscall", "exec", "fork", "exit", "denial"}
        # detect's last score per target, and the file that is not one counted
        assert prom.value('swatch_detect_score{target="pid 4242"}') == 0.375
        assert prom.value('swatch_detect_score{target="cgroup /agents/a"}') == 2.5
        assert prom.value("swatch_detect_score_unreadable") == 1
        assert prom.value('swatch_detect_score_timestamp_seconds{target="pid 4242"}') > 1e9
    finally:
        if prom is not None:
            prom.stop()
        if p.poll() is None:
            p.kill()
        if serve is not None:
            assert _end(serve) == 0, err.read_text()


def _lines(log: Path) -> list[dict]:  # type: ignore[type-arg]
    files = sorted(log.parent.glob(log.name + "*"))
    out = []
    for f in files:
        for line in f.read_text().splitlines():
            out.append(json.loads(line))  # every line whole, in every file
    return out


def test_json_log_follows_loads_rotates_and_restarts(pin_dir: Path, policy_pin_dir: Path,  # type: ignore[no-untyped-def]
                                                     workload, tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    err = tmp_path / "serve.err"
    args = ("--pin-dir", str(pin_dir), "--policy-pin-dir", str(policy_pin_dir),
            "--json-log", str(log), "--json-log-max-bytes", "8192", "--json-log-keep", "1000",
            "--no-audit")
    serve = _start_serve(err, *args)
    try:
        assert _said(err, "nothing pinned"), err.read_text()
        swatch("load", "--comm", "counts", "--pin-dir", str(pin_dir), check=True)
        assert _said(err, "attached to the tracer"), err.read_text()
        first = _held_counts(workload, 3, 1, 150)
        _release(first)
        assert _end(serve) == 0, err.read_text()  # drains, fsyncs
        # Restart: the same log, appended to; nothing repeated or skipped.
        serve = _start_serve(err, *args)
        assert _said(err, "attached to the tracer"), err.read_text()
        second = _held_counts(workload, 3, 1, 90)
        _release(second)
        swatch("unload", "--pin-dir", str(pin_dir), check=True)
        assert _said(err, "unloaded; detached"), err.read_text()
        assert _said(err, "nothing pinned"), err.read_text()
        # SIGHUP reopens by name (what logrotate's create mode needs).
        log.rename(tmp_path / "moved.jsonl.keep")
        serve.send_signal(signal.SIGHUP)
        assert _said(err, "SIGHUP: reopened"), err.read_text()
        assert log.exists()
        assert _end(serve, signal.SIGINT) == 0, err.read_text()
    finally:
        if serve.poll() is None:
            _end(serve)
    events = _lines(log) + [json.loads(x) for x in
                            (tmp_path / "moved.jsonl.keep").read_text().splitlines()]

    def missing_opens(pid: int) -> int:
        return sum(1 for e in events if e.get("pid") == pid and e.get("syscall") == "openat"
                   and "/nonexistent/swatch-counts" in json.dumps(e))
    assert missing_opens(first.pid) == 150
    assert missing_opens(second.pid) == 90
    rotated = sorted(tmp_path.glob("events.jsonl.*"))
    assert rotated, "no rotation at 8192 bytes"
    for f in rotated:
        assert f.stat().st_size <= 8192, f


def test_rotation_by_rename_never_splits_a_line(tmp_path: Path) -> None:
    """No kernel: the writer alone. Lines of 100 bytes, files of at most 1000, keep 3."""
    path = tmp_path / "x.jsonl"
    out = RotatingJsonLog(path, max_bytes=1000, keep=3)
    reader = path.open("rb")  # a shipper holding the first file open, by inode
    ino = os.fstat(reader.fileno()).st_ino
    lines = [json.dumps({"n": i, "pad": "x" * (81 - len(str(i)))}).encode() + b"\n"
             for i in range(55)]
    assert all(len(line) == 100 for line in lines)
    out.write(b"".join(lines[:25]))
    for line in lines[25:]:
        out.write(line)
    out.close()
    assert out.rotations == 5
    files = [path.with_name(f"x.jsonl.{i}") for i in (3, 2, 1)] + [path]
    got = [json.loads(line)["n"] for f in files for line in f.read_text().splitlines()]
    assert got == list(range(20, 55))  # the three newest rotated files and the current one
    assert not path.with_name("x.jsonl.4").exists()
    assert all(f.stat().st_size == 1000 for f in files[:3])
    # The first file was renamed, never truncated: its reader still sees all it held.
    assert [json.loads(x)["n"] for x in reader.read().splitlines()] == list(range(10))
    assert os.fstat(reader.fileno()).st_ino == ino
    reader.close()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = swatch("serve", "--metrics", f"127.0.0.1:{port}", "--pin-dir",
                   str(new_pin_dir("none")), "--audit-dir", str(tmp_path / "a"), timeout=20)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"swatch: error: --metrics 127.0.0.1:{port}: cannot listen: Address already in use"]
    assert not (tmp_path / "a").exists()  # the port is bound before the audit log is opened
    r = swatch("serve", "--json-log", "/etc/hostname/events.jsonl", "--no-audit", timeout=20)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["swatch: error: --json-log /etc/hostname/events.jsonl: "
                                     "cannot open for writing: Not a directory"]
    r = swatch("serve", "--metrics", "127.0.0.1:http", timeout=20)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr


def _scrape_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()[:3000]
    except OSError as e:
        return f"{e}: {getattr(e, 'read', lambda: b'')()[:3000]!r}"


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape of serve's /metrics, parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_denials_reach_the_log_and_metrics(policy_pin_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from test_policy_enforce import gated_py

    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    t = gated_py("n = 0\nfor _ in range(3):\n    try:\n        socket.socket()\n"
                 "    except OSError:\n        n += 1\nsys.exit(n)")
    swatch("policy-load", "--pid", str(t.pid), "--policy", "no-network", "--pin-dir",
           str(policy_pin_dir), check=True)
    log, err, port = tmp_path / "events.jsonl", tmp_path / "serve.err", _free_port()
    serve = _start_serve(err, "--pin-dir", str(new_pin_dir("none")), "--policy-pin-dir",
                         str(policy_pin_dir), "--json-log", str(log), "--metrics",
                         f"127.0.0.1:{port}", "--audit-dir", str(tmp_path / "audit"))
    try:
        assert _said(err, "attached to policy no-network"), err.read_text()
        rc, _, _ = t.go()
        assert rc == 3  # three sockets refused
        key = ("swatch_denials_total", (("operation", "socket"), ("tier", "cgroup")))
        assert wait_for(lambda: _scrape(port).get(key) == 3, timeout=15), _scrape(port)
        delivered = ("swatch_events_delivered_total", (("type", "denial"),))
        assert wait_for(lambda: _scrape(port).get(delivered) == 3, timeout=15), _scrape(port)
        metrics = _scrape(port)
        assert metrics[("swatch_events_emitted_total", (("type", "denial"),))] == 3
        assert metrics[("swatch_events_dropped_total", (("type", "denial"),))] == 0
        assert metrics[("swatch_policy_loaded", (("policy", "no-network"),))] == 1
    finally:
        assert _end(serve) == 0, err.read_text()
    denied = [e for e in _lines(log) if e.get("type") == "denied"]
    assert [(d["pid"], d["op"], d["tier"], d["action"]) for d in denied] == [
        (t.pid, "socket", "cgroup", "blocked")] * 3


def test_reactive_tier_denials_reach_the_audit_log(policy_pin_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Denials of the reactive tier (SIGKILL at the call's entry; the cgroup tier's are in the
    tests above) are in the audit log and the JSON log with their tier and action, and
    counted per operation and tier in /metrics. (The LSM and fmod_ret tiers load only in the
    VM kernels of test_policy_vm, not on this machine's.)"""
    from test_policy_enforce import gated_py

    monkeypatch.setenv("SWATCH_POLICY_TIER", "reactive")
    t = gated_py("socket.socket()\nsys.exit(3)")
    swatch("policy-load", "--pid", str(t.pid), "--policy", "no-network", "--pin-dir",
           str(policy_pin_dir), check=True)
    log, err, port = tmp_path / "events.jsonl", tmp_path / "serve.err", _free_port()
    audit = tmp_path / "audit"
    serve = _start_serve(err, "--pin-dir", str(new_pin_dir("none")), "--policy-pin-dir",
                         str(policy_pin_dir), "--json-log", str(log), "--metrics",
                         f"127.0.0.1:{port}", "--audit-dir", str(audit))
    try:
        assert _said(err, "attached to policy no-network"), err.read_text()
        rc, _, _ = t.go()
        assert rc == -signal.SIGKILL
        key = ("swatch_denials_total", (("operation", "socket"), ("tier", "reactive")))
        assert wait_for(lambda: _scrape(port).get(key) == 1, timeout=15), _scrape(port)
        delivered = ("swatch_events_delivered_total", (("type", "denial"),))
        assert wait_for(lambda: _scrape(port).get(delivered) == 1, timeout=15)
    finally:
        assert _end(serve) == 0, err.read_text()
    got = [(d["pid"], d["op"], d["tier"], d["action"]) for d in _lines(log)
           if d.get("type") == "denied"]
    assert got == [(t.pid, "socket", "reactive", "killed")]
    kept = [r["event"] for r in read_audit(audit) if r["kind"] == "event"]
    assert [(d["pid"], d["op"], d["tier"], d["action"]) for d in kept] == got


# ------------------------------------------------------------------------ the audit log

# Denied socket() calls, about 10,000 a second (bursts of 100): N of them for the first line
# read ("done" after), then a storm from the second line until the next, which it answers with
# how many it made. It lasts exactly as long as the test needs to kill and restart serve in it.
STORM = ("import select, socket, sys, time\n"
         "def deny(n):\n"
         "    for i in range(n):\n"
         "        try:\n"
         "            socket.socket()\n"
         "        except OSError:\n"
         "            pass\n"
         "        if i % 100 == 99:\n"
         "            time.sleep(0.01)\n"
         "deny(int(sys.stdin.readline()))\n"
         "print('done', flush=True)\n"
         "sys.stdin.readline()\n"
         "made = 0\n"
         "while not select.select([sys.stdin], [], [], 0)[0]:\n"
         "    deny(100)\n"
         "    made += 100\n"
         "print(made, flush=True)\n")


def _pinned_counts(pins: Path, policy: bool):  # type: ignore[no-untyped-def]
    """The kernel's counters of what is pinned at pins: the enforcer's or the tracer's."""
    from syscall_watcher.policy.enforcer import PinnedPolicy
    from syscall_watcher.trace.tracer import PinnedSession

    session = (PinnedPolicy if policy else PinnedSession).open(pins)
    try:
        return session.counts() if policy else session.counters()
    finally:
        session.close()


def _policy_counts(ppin: Path):  # type: ignore[no-untyped-def]
    return _pinned_counts(ppin, policy=True)


def _denials_logged(d: Path) -> int:
    """Denial records in the audit log now (lines fsynced so far; a torn tail is skipped)."""
    n = 0
    for f in d.glob("records-*.jsonl"):
        n += f.read_bytes().count(b'"type":"denied"')
    return n


def test_audit_log_restart_mid_storm(policy_pin_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A denial storm; serve is killed with SIGKILL in the middle of it and started again while
    it goes on. Every denial the kernel counted is in the audit log exactly once or inside a
    gap record; the policy's load is logged once, its unload once; the log verifies."""
    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    storm = subprocess.Popen([sys.executable, "-B", "-c", STORM], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert storm.stdin is not None and storm.stdout is not None
    d, err = tmp_path / "audit", tmp_path / "serve.err"
    args = ("--audit-dir", str(d), "--pin-dir", str(new_pin_dir("none")), "--policy-pin-dir",
            str(policy_pin_dir), "--checkpoint-every", "5000")
    serve = None
    try:
        swatch("policy-load", "--pid", str(storm.pid), "--policy", "no-network", "--pin-dir",
               str(policy_pin_dir), check=True)
        serve = _start_serve(err, *args)
        assert _said(err, "attached to policy no-network"), err.read_text()
        storm.stdin.write("2000\n")
        storm.stdin.flush()
        assert storm.stdout.readline() == "done\n"
        assert wait_for(lambda: _denials_logged(d) == 2000, timeout=15), _denials_logged(d)
        storm.stdin.write("go\n")  # the storm, until told to stop
        storm.stdin.flush()
        assert wait_for(lambda: _denials_logged(d) >= 6000, timeout=30)
        serve.kill()  # SIGKILL, mid-storm
        serve.wait()
        at_kill = _policy_counts(policy_pin_dir)
        # What a SIGKILL in the middle of a write() leaves: part of a line. (Made here: the
        # kill cannot be timed to land inside one; the next start must cut it and say so.)
        segment = sorted(d.glob("records-*.jsonl"))[-1]
        partial = b'{"event":{"action":"blocked","comm":"pyth'
        with segment.open("ab") as f:
            f.write(partial)
        size_at_kill = segment.stat().st_size
        # While serve is down the ring (1 MiB) fills and the kernel counts what it drops.
        assert wait_for(lambda: _policy_counts(policy_pin_dir).dropped > at_kill.dropped,
                        timeout=30)
        err = tmp_path / "serve2.err"
        serve = _start_serve(err, *args)
        assert _said(err, "attached to policy no-network"), err.read_text()
        # the storm goes on under the restarted serve (live denials, not only the ring's)
        live_from = _policy_counts(policy_pin_dir).emitted
        assert wait_for(lambda: _policy_counts(policy_pin_dir).emitted >= live_from + 2000,
                        timeout=30)
        storm.stdin.write("stop\n")
        storm.stdin.flush()
        total = 2000 + int(storm.stdout.readline())
        counts = _policy_counts(policy_pin_dir)
        assert counts.emitted == counts.by_op["socket"] == total

        def accounted() -> bool:  # (read_audit below validates them all, once)
            recs = [json.loads(x) for f in d.glob("records-*.jsonl")
                    for x in f.read_bytes().splitlines(keepends=True)
                    if x.endswith(b"\n")]  # a line being appended right now: next time
            written = sum(1 for r in recs if r["kind"] == "event")
            gapped = sum(r["lost"] for r in recs if r["kind"] == "gap")
            return written + gapped == total
        assert wait_for(accounted, timeout=30), err.read_text()
        swatch("policy-unload", "--pin-dir", str(policy_pin_dir), check=True)
        assert _said(err, "unloaded; detached"), err.read_text()
        assert _end(serve) == 0, err.read_text()
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait()
        storm.kill()
        storm.wait()
    recs = read_audit(d)  # each record valid against the audit schema (events: output schema)
    denials = [r["event"] for r in recs if r["kind"] == "event"]
    gaps = [r for r in recs if r["kind"] == "gap"]
    assert all(e["type"] == "denied" and e["pid"] == storm.pid and e["op"] == "socket"
               for e in denials)
    keys = [(e["time_ns"], e["tid"]) for e in denials]
    assert len(set(keys)) == len(keys), "a denial written twice"
    assert keys == sorted(keys), "denials out of kernel-time order"
    assert len(denials) + sum(g["lost"] for g in gaps) == total
    assert all(g["what"] == "denials" and g["after_seq"] == g["seq"] - 1 for g in gaps)
    full = [g for g in gaps if g["detail"]["cause"] == "ring buffer full"]
    assert sum(g["lost"] for g in full) == counts.dropped > 0  # the kernel's exact drop count
    life = [(r["component"], r["action"]) for r in recs if r["kind"] == "lifecycle"]
    assert life == [("policy", "load"), ("policy", "unload")]
    # the log's own entries: two starts, the torn line cut at the second, a stop
    logged = [r for r in recs if r["kind"] == "log"]
    assert [r["what"] for r in logged] == ["start", "torn_tail", "start", "stop"]
    torn = logged[1]["detail"]
    assert torn["file"] == segment.name and torn["bytes_cut"] >= len(partial)
    assert torn["offset"] + torn["bytes_cut"] == size_at_kill  # all after the last whole line
    r = swatch("audit", "verify", "--audit-dir", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    shown = swatch("audit", "show", "--audit-dir", str(d)).stdout
    first = full[0]
    assert (f"GAP {first['lost']} denials lost between seq {first['seq'] - 1} and "
            f"{first['seq']}") in shown


def test_trace_and_denials_interleaved_in_time_order(pin_dir: Path, policy_pin_dir: Path,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One process is denied socket() and then opens a file, five times: serve's JSON log
    and audit log (--events openat) hold them in that order, denials and trace events
    interleaved, because one stream reads both rings."""
    from test_policy_enforce import gated_py

    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    t = gated_py("for i in range(5):\n    try:\n        socket.socket()\n"
                 "    except OSError:\n        pass\n    try:\n"
                 "        open(f'/nonexistent/swatch-interleave-{i}')\n"
                 "    except OSError:\n        pass\n")
    log, d, err = tmp_path / "events.jsonl", tmp_path / "audit", tmp_path / "serve.err"
    swatch("policy-load", "--pid", str(t.pid), "--policy", "no-network", "--pin-dir",
           str(policy_pin_dir), check=True)
    swatch("load", "--pid", str(t.pid), "--pin-dir", str(pin_dir), check=True)
    serve = _start_serve(err, "--pin-dir", str(pin_dir), "--policy-pin-dir",
                         str(policy_pin_dir), "--json-log", str(log), "--audit-dir", str(d),
                         "--events", "openat")
    try:
        assert _said(err, "attached to the tracer"), err.read_text()
        assert _said(err, "attached to policy"), err.read_text()
        assert t.go()[0] == 0
        assert wait_for(lambda: _denials_logged(d) == 5, timeout=15), err.read_text()
    finally:
        assert _end(serve) == 0, err.read_text()

    def order(events: list[dict]) -> list[str]:  # type: ignore[type-arg]
        out = []
        for e in events:
            if e.get("pid") != t.pid:
                continue
            if e["type"] == "denied":
                out.append("denied")
            elif e.get("syscall") == "openat" and "swatch-interleave-" in json.dumps(e):
                out.append("open" + json.dumps(e).split("swatch-interleave-")[1][0])
        return out

    expected = [x for i in range(5) for x in ("denied", f"open{i}")]
    assert order([parse_record(x) for x in log.read_text().splitlines()]) == expected
    recs = read_audit(d)
    assert order([r["event"] for r in recs if r["kind"] == "event"]) == expected
    assert not [r for r in recs if r["kind"] == "event" and r["event"]["type"] != "denied"
                and r["event"].get("syscall") != "openat"], "--events openat let others in"
    assert [(r["component"], r["action"]) for r in recs if r["kind"] == "lifecycle"] == [
        ("tracer", "load"), ("policy", "load")]


def test_audit_bad_input_is_one_line(tmp_path: Path) -> None:
    none = str(new_pin_dir("none"))
    base = ("--pin-dir", none, "--policy-pin-dir", none)
    r = swatch("serve", "--audit-dir", "/etc/hostname/audit", *base, timeout=20)
    assert (r.returncode, r.stderr.splitlines()) == (1, [
        "swatch: error: /etc/hostname/audit: cannot create the audit directory: "
        "Not a directory"])
    # A read-only audit directory, and one that cannot be made on a read-only file system.
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        r = swatch("serve", "--audit-dir", str(ro), *base, timeout=20)
        assert (r.returncode, r.stderr.splitlines()) == (1, [
            f"swatch: error: {ro}: the audit directory is not writable by uid 0"])
        r = swatch("serve", "--audit-dir", str(ro / "audit"), *base, timeout=20)
        assert (r.returncode, r.stderr.splitlines()) == (1, [
            f"swatch: error: {ro / 'audit'}: cannot create the audit directory: "
            "Read-only file system"])
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    r = swatch("serve", "--events", "exec,bogus", *base, timeout=20)
    assert (r.returncode, r.stderr.splitlines()) == (1, [
        "swatch: error: --events exec,bogus: 'bogus' is neither a record type (syscall, exec, "
        "fork, exit, denied, tls, http, llm, step) nor a system call name"])
    # A log that does not verify: refused, where, and `swatch audit repair` offered.
    d = tmp_path / "audit"
    from syscall_watcher.audit import AuditLog
    with AuditLog.open(d) as log:
        log.append_batch([{"type": "denied", "n": i} for i in range(3)])
    seg = d / "records-0000000000000000.jsonl"
    data = bytearray(seg.read_bytes())
    data[data.index(b'"n":1') + 4] = ord("7")
    seg.write_bytes(bytes(data))
    r = swatch("serve", "--audit-dir", str(d), *base, timeout=20)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"swatch: error: the audit log in {d} does not verify: seq 2")
    assert f"run `swatch audit repair --audit-dir {d}`" in r.stderr
    assert seg.read_bytes() == bytes(data)  # nothing appended
    # A signing key others can read
    d2 = tmp_path / "audit2"
    AuditLog.open(d2).close()
    (d2 / "audit.key").chmod(0o644)
    r = swatch("serve", "--audit-dir", str(d2), *base, timeout=20)
    assert (r.returncode, r.stderr.splitlines()) == (1, [
        f"swatch: error: {d2 / 'audit.key'}: the signing key has mode 0644, readable or "
        f"writable by others; it must be 0600 (chmod 600 {d2 / 'audit.key'})"])
    r = swatch("serve", "--checkpoint-every", "0", *base, timeout=20)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    # An audit log another serve is writing; and nothing pinned is no error: serve waits.
    err, d3 = tmp_path / "first.err", tmp_path / "audit3"
    first = _start_serve(err, "--audit-dir", str(d3), *base)
    try:
        assert _said(err, "nothing pinned"), err.read_text()
        r = swatch("serve", "--audit-dir", str(d3), *base, timeout=20)
        assert (r.returncode, r.stderr.splitlines()) == (1, [
            f"swatch: error: {d3}: another process (pid {first.pid}) is writing this audit "
            "log"])
    finally:
        assert _end(first) == 0, err.read_text()


def test_phase_switches_reach_the_audit_log(policy_pin_dir: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`swatch policy phase` while serve runs: each switch is a lifecycle record of the audit
    log (and a `phase` line of the JSON log), in order, and the log verifies."""
    from test_policy_phases import phased_policy

    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    pol, _, _ = phased_policy(tmp_path)
    target = subprocess.Popen(["sleep", "60"])
    audit, log, err = tmp_path / "audit", tmp_path / "events.jsonl", tmp_path / "serve.err"
    serve = None
    try:
        swatch("policy", "load", "--pid", str(target.pid), "--policy", str(pol), "--pin-dir",
               str(policy_pin_dir), check=True)
        serve = _start_serve(err, "--pin-dir", str(new_pin_dir("none")), "--policy-pin-dir",
                             str(policy_pin_dir), "--json-log", str(log), "--audit-dir",
                             str(audit))
        assert _said(err, "attached to policy agent"), err.read_text()
        for name in ("write_logs", "read_only"):
            swatch("policy", "phase", name, "--pin-dir", str(policy_pin_dir), check=True)
            assert wait_for(lambda: any(e.get("type") == "phase" and e["phase"] == name
                                        for e in _lines(log)), timeout=15), _lines(log)
    finally:
        if serve is not None:
            assert _end(serve) == 0, err.read_text()
        swatch("policy", "unload", "--pin-dir", str(policy_pin_dir))
        target.kill()
        target.wait()
    switches = [(r["detail"]["previous"], r["detail"]["phase"]) for r in read_audit(audit)
                if r.get("kind") == "lifecycle" and r.get("action") == "phase"]
    assert switches == [("read_only", "write_logs"), ("write_logs", "read_only")]
    phases = [(e["previous"], e["phase"]) for e in _lines(log) if e.get("type") == "phase"]
    assert phases == switches
    r = swatch("audit", "verify", "--audit-dir", str(audit))
    assert r.returncode == 0, r.stderr


def test_unload_seen_at_shutdown(pin_dir: Path, policy_pin_dir: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer and the policy are unloaded while serve cannot look (SIGSTOP), then SIGTERM:
    serve records both unloads before it stops (not at its next start), then the stop record
    and a last signed checkpoint over every record, and exits 0 (what `docker stop` of the
    DaemonSet's pod right after `swatch unload` does)."""
    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    sleeper = subprocess.Popen(["sleep", "300"])
    d, err = tmp_path / "audit", tmp_path / "serve.err"
    serve = None
    try:
        swatch("load", "--pid", str(sleeper.pid), "--pin-dir", str(pin_dir), check=True)
        swatch("policy-load", "--pid", str(sleeper.pid), "--policy", "no-network",
               "--pin-dir", str(policy_pin_dir), check=True)
        serve = _start_serve(err, "--audit-dir", str(d), "--pin-dir", str(pin_dir),
                             "--policy-pin-dir", str(policy_pin_dir))
        assert _said(err, "attached to the tracer") and _said(err, "attached to policy"), \
            err.read_text()
        serve.send_signal(signal.SIGSTOP)
        swatch("unload", "--pin-dir", str(pin_dir), check=True)
        swatch("policy-unload", "--pin-dir", str(policy_pin_dir), check=True)
        serve.send_signal(signal.SIGTERM)  # seen first thing when it runs again
        serve.send_signal(signal.SIGCONT)
        assert _end(serve) == 0, err.read_text()
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait()
        sleeper.kill()
        sleeper.wait()
    recs = read_audit(d)
    life = [(r["component"], r["action"], r["detail"]["loader_pid"]) for r in recs
            if r["kind"] == "lifecycle"]
    loads = [x[2] for x in life[:2]]
    assert [x[:2] for x in life] == [("tracer", "load"), ("policy", "load"),
                                     ("tracer", "unload"), ("policy", "unload")], life
    assert [x[2] for x in life[2:]] == loads  # the same loads
    assert [r["what"] for r in recs if r["kind"] == "log"] == ["start", "stop"]
    assert recs[-1]["what"] == "stop"
    last = json.loads((d / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    assert last["size"] == len(recs)  # signed at shutdown, over every record
    r = swatch("audit", "verify", "--audit-dir", str(d))
    assert r.returncode == 0, r.stdout + r.stderr


# Failed openat() as fast as Python makes them, after a first line, until a second line: a
# trace event storm that keeps serve busy all the time (so a kill lands mid-batch).
TRACE_STORM = ("import os, select, sys\n"
               "sys.stdin.readline()\n"
               "while not select.select([sys.stdin], [], [], 0)[0]:\n"
               "    for _ in range(500):\n"
               "        try:\n"
               "            os.open('/nonexistent/swatch-trace-storm', os.O_RDONLY)\n"
               "        except OSError:\n"
               "            pass\n"
               "print('done', flush=True)\n")




def _syscalls_logged(d: Path) -> int:
    return sum(f.read_bytes().count(b'"type":"syscall"') for f in d.glob("records-*.jsonl"))


def test_trace_events_in_flight_at_kill9_are_a_gap(pin_dir: Path, tmp_path: Path) -> None:
    """serve keeps every syscall record of a storm (--events syscall) and is killed with
    SIGKILL in the middle of it, then started again: what the killed serve had taken off the
    ring but not written is a gap record, so the log's syscall records (none twice) and its
    gap counts add up to exactly what the kernel counted as emitted."""
    storm = subprocess.Popen([sys.executable, "-B", "-c", TRACE_STORM], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert storm.stdin is not None and storm.stdout is not None
    d, err = tmp_path / "audit", tmp_path / "serve.err"
    args = ("--audit-dir", str(d), "--pin-dir", str(pin_dir), "--policy-pin-dir",
            str(new_pin_dir("none")), "--events", "syscall", "--checkpoint-every", "2000")
    serve = None
    try:
        # A 1 MiB ring (~10,000 records; the default 16 MiB holds ~100,000): it fills as
        # surely while serve is down, and the restarted serve drains ten times fewer records
        # before the storm's end, so the log the test reads and validates stays ~20,000
        # records, not ~130,000 (half a minute of schema validation).
        swatch("load", "--pid", str(storm.pid), "--pin-dir", str(pin_dir), "--ring-size",
               str(1 << 20), check=True)
        serve = _start_serve(err, *args)
        assert _said(err, "attached to the tracer"), err.read_text()
        storm.stdin.write("go\n")
        storm.stdin.flush()
        # killed after two signed checkpoints (--checkpoint-every 2000)
        assert wait_for(lambda: _syscalls_logged(d) >= 5000, timeout=30)
        serve.kill()  # SIGKILL, mid-storm, while serve takes batches off the ring
        serve.wait()
        err2 = tmp_path / "serve2.err"
        serve = _start_serve(err2, *args)
        assert _said(err2, "attached to the tracer"), err2.read_text()
        after = _syscalls_logged(d)
        assert wait_for(lambda: _syscalls_logged(d) >= after + 5000, timeout=30)
        storm.stdin.write("stop\n")
        storm.stdin.flush()
        assert storm.stdout.readline() == "done\n"
        assert _end(serve) == 0, (tmp_path / "serve2.err").read_text()  # drains, settles
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait()
        storm.kill()
        storm.wait()
    counts = _pinned_counts(pin_dir, policy=False)  # serve stopped: the tracer emits no more
    recs = read_audit(d)
    (load,) = [r for r in recs if r["kind"] == "lifecycle"]
    assert (load["component"], load["action"]) == ("tracer", "load")
    # serve was the tracer's first consumer: the kernel's counts began at 0 with the log's
    assert load["detail"].get("audit_events", {}).get("emitted", {}).get("syscall", 0) == 0
    calls = [r["event"] for r in recs if r["kind"] == "event"]
    assert {e["type"] for e in calls} == {"syscall"} and {e["pid"] for e in calls} == {storm.pid}
    keys = [(e["time_ns"], e["tid"]) for e in calls]
    assert len(set(keys)) == len(keys), "a record written twice"
    gaps = [r for r in recs if r["kind"] == "gap"]
    assert all(g["detail"]["ring"] == "events" for g in gaps)
    lost = sum(g["lost"] for g in gaps)
    assert len(calls) + lost == counts.emitted["syscall"], (len(calls), gaps)
    full = sum(g["lost"] for g in gaps if g["detail"]["cause"] == "ring buffer full")
    assert full == counts.dropped["syscall"] > 0  # the kernel's exact drop count
    r = swatch("audit", "verify", "--audit-dir", str(d))
    assert r.returncode == 0, r.stdout + r.stderr


UNIT = Path(__file__).parent.parent / "deploy" / "systemd" / "swatch.service"


def _unit_capabilities() -> list[str]:
    (line,) = [x for x in UNIT.read_text().splitlines()
               if x.startswith("CapabilityBoundingSet=")]
    return line.split("=", 1)[1].split()


def test_serve_runs_with_the_units_capabilities(pin_dir: Path, policy_pin_dir: Path,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """serve under exactly the unit's CapabilityBoundingSet (setpriv sets the bounding set as
    systemd does for a root service, so root keeps only those) attaches to a tracer and a
    policy loaded with every capability, and its audit log, JSON log and /metrics hold the
    kernel's denials and the traced process's events."""
    from test_policy_enforce import gated_py

    caps = _unit_capabilities()
    assert caps and all(c.startswith("CAP_") for c in caps), caps
    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")
    t = gated_py("n = 0\nfor _ in range(3):\n    try:\n        socket.socket()\n"
                 "    except OSError:\n        n += 1\n"
                 "for _ in range(5):\n    try:\n        os.open('/nonexistent/swatch-unit', 0)\n"
                 "    except OSError:\n        pass\nsys.exit(n)")
    swatch("load", "--pid", str(t.pid), "--pin-dir", str(pin_dir), check=True)
    swatch("policy-load", "--pid", str(t.pid), "--policy", "no-network", "--pin-dir",
           str(policy_pin_dir), check=True)
    log, err, port = tmp_path / "events.jsonl", tmp_path / "serve.err", _free_port()
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in caps)])
    serve = subprocess.Popen(
        ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all", "--", SWATCH, "serve",
         "--pin-dir", str(pin_dir), "--policy-pin-dir", str(policy_pin_dir), "--json-log",
         str(log), "--metrics", f"127.0.0.1:{port}", "--audit-dir", str(tmp_path / "audit"),
         "--events", "openat"], stdout=subprocess.DEVNULL, stderr=err.open("w"))
    try:
        assert _said(err, "attached to policy no-network"), err.read_text()
        assert _said(err, "attached to the tracer"), err.read_text()
        status = Path(f"/proc/{serve.pid}/status").read_text()
        (eff,) = [int(x.split()[1], 16) for x in status.splitlines() if x.startswith("CapEff")]
        assert eff == sum(1 << _CAP_NUMBERS[c] for c in caps), hex(eff)
        rc, _, _ = t.go()
        assert rc == 3  # three sockets refused
        key = ("swatch_denials_total", (("operation", "socket"), ("tier", "cgroup")))
        assert wait_for(lambda: _scrape(port).get(key) == 3, timeout=15), _scrape(port)
        calls = ("swatch_syscall_errors_total", (("syscall", "openat"), ("target", f"pid {t.pid}")))
        assert _scrape(port)[calls] >= 5

        def logged() -> list[dict]:  # type: ignore[type-arg]
            return [e for e in _lines(log) if e.get("type") == "denied"
                    or e.get("path") == "/nonexistent/swatch-unit"]
        assert wait_for(lambda: len(logged()) == 8, timeout=15), logged()
    finally:
        assert _end(serve) == 0, err.read_text()
    recs = read_audit(tmp_path / "audit")
    kept = [r["event"] for r in recs if r["kind"] == "event"]
    assert len([e for e in kept if e["type"] == "denied"]) == 3
    assert len([e for e in kept if e.get("path") == "/nonexistent/swatch-unit"]) == 5
    r = swatch("audit", "verify", "--audit-dir", str(tmp_path / "audit"))
    assert r.returncode == 0, r.stdout + r.stderr


# linux/capability.h
_CAP_NUMBERS = {"CAP_DAC_READ_SEARCH": 2, "CAP_NET_ADMIN": 12, "CAP_SYS_PTRACE": 19,
                "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_PERFMON": 38, "CAP_BPF": 39}


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """deploy/systemd/swatch.service parses cleanly (systemd-analyze verify: every directive
    known and valid; no systemd runs here to start it). The only change: ExecStart names this
    checkout's swatch, as the unit's /usr/local/bin/swatch is not installed here."""
    unit = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/swatch serve " in unit
    for name, text in (("swatch.service", unit),
                       ("misspelt.service", unit.replace("ProtectSystem=strict",
                                                         "ProtectSystem=strcit"))):
        path = tmp_path / name
        path.write_text(text.replace("/usr/local/bin/swatch", SWATCH))
        done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        if name == "swatch.service":
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
        else:  # the check can fail: a bad value is named, with its line
            line = text[:text.index("ProtectSystem=")].count("\n") + 1
            want = f"misspelt.service:{line}: Failed to parse protect system value"
            assert want in done.stderr, done.stderr


# ------------------------------------------------------------------------ --agent: steps

def test_agent_steps_reach_the_json_log_and_the_audit_log(pin_dir: Path, conversation,  # type: ignore[no-untyped-def]
                                                          model, tmp_path: Path) -> None:
    """test_steps' agent loop against the fake HTTPS model, traced by a pinned tracer and
    written by `swatch serve --agent`: the steps of test_steps (start records after their LLM
    responses; exact files, addresses, exit codes, the one flag), each summary written as
    soon as its step is over — closed by the next request, or its agent gone, and its
    processes exited — while serve runs, after its step's last record; the audit log holds
    the same step records and verifies. A fourth tool call kills the agent (`kill -9 $PPID`):
    no request closes that step."""
    from test_steps import base, check_steps, held_agent

    model.script = model.script + [[("run_shell", {"cmd": "kill -9 $PPID"})]]
    agent = held_agent(conversation)
    assert agent.stdin is not None and agent.stdout is not None
    log, audit, err = tmp_path / "events.jsonl", tmp_path / "audit", tmp_path / "serve.err"
    serve = None
    try:
        swatch("load", "--pid", str(agent.pid), "--pin-dir", str(pin_dir), check=True)
        serve = _start_serve(err, "--agent", "--pin-dir", str(pin_dir), "--policy-pin-dir",
                             str(new_pin_dir("none")), "--json-log", str(log), "--audit-dir",
                             str(audit))
        assert _said(err, "attached to the tracer"), err.read_text()
        assert _said(err, "swatch: --tls: uprobes on "), err.read_text()  # streaming
        agent.stdin.write("go\n")
        agent.stdin.close()
        assert agent.wait(timeout=30) == -signal.SIGKILL
        assert agent.stdout.read() == ""  # killed in its fourth step

        def summaries() -> list[dict]:  # type: ignore[type-arg]
            return [r for r in _lines(log) if r["type"] == "step" and r["event"] == "summary"]
        # written while serve runs, not at its stop
        assert wait_for(lambda: len(summaries()) == 4, timeout=15), (summaries(),
                                                                      err.read_text())
    finally:
        if serve is not None:
            assert _end(serve) == 0, err.read_text()
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    recs = [parse_record(x) for x in log.read_text().splitlines()]  # each against the schema
    summary = check_steps(recs, conversation)
    assert sorted(summary) == [1, 2, 3, 4]  # each once (not again when serve stopped)
    (s4_start,) = [r for r in recs if r["type"] == "step" and r["event"] == "start"][3:]
    assert s4_start["tool_calls"] == [{"name": "run_shell", "arguments": {"cmd": "kill -9 $PPID"}}]
    # step 4: its shell killed the agent (a builtin: no other program) and exited 0; no
    # request closed it
    s4 = summary[4]
    assert [base(e["filename"]) for e in s4["execs"]] == ["sh"]
    assert (s4["files_read"], s4["files_written"], s4["connects"]) == ([], [], [])
    assert [e["exit_code"] for e in s4["exits"]] == [0] and s4["flags"] == []
    assert s4["end_ns"] is None
    (killed,) = [r for r in recs if r["type"] == "exit" and r["pid"] == agent.pid]
    assert killed.get("signal") == "SIGKILL"
    # each summary after the last record of its step's processes
    for sid, s in summary.items():
        assert recs.index(s) > max(i for i, r in enumerate(recs)
                                   if r.get("step") == sid and r["type"] != "step")

    # The audit log (default --events: denials, and with --agent the steps) holds the same
    # step records, in the same order, and verifies.
    events = [r["event"] for r in read_audit(audit) if r["kind"] == "event"]
    assert events == [r for r in recs if r["type"] == "step"]
    r = swatch("audit", "verify", "--audit-dir", str(audit))
    assert r.returncode == 0, r.stdout + r.stderr


def test_tls_and_agent_bad_input_is_one_line(tmp_path: Path) -> None:
    none = str(new_pin_dir("none"))
    base = ("--pin-dir", none, "--policy-pin-dir", none)
    for args, line in (
            (("--agent", "--no-audit"), "--agent: nothing would keep its records: give "
                                        "--json-log"),
            (("--tls", "--audit-dir", str(tmp_path / "a")),
             "--tls: nothing would keep its records: give --json-log or --events tls,http,llm"),
            (("--events", "step", "--no-audit"), "--events step: step records come with "
                                                 "--agent"),
            (("--events", "exec,llm"), "--events exec,llm: llm records come with --tls (or "
                                       "--agent)"),
            (("--tls", "--tls-bytes", "0", "--no-audit"),
             "--tls-bytes 0: give a number from 1 to 65536"),
            (("--tls-lib", "/nonexistent/libssl.so", "--no-audit"),
             "--tls-bytes and --tls-lib go with --tls")):
        r = swatch("serve", *args, *base, timeout=20)
        assert (r.returncode, r.stderr.splitlines()) == (1, [f"swatch: error: {line}"]), args
    assert not (tmp_path / "a").exists()


def test_open_steps_summed_up_at_sigterm_and_at_unload_ids_go_on(pin_dir: Path, conversation,  # type: ignore[no-untyped-def]
                                                                   model, tmp_path: Path) -> None:
    """A step still going when serve lets go of the tracer is summed up then, in the JSON log
    and the audit log: at SIGTERM, and at an unload. The agent loop's tool calls here block
    reading the agent's stdin (the test's pipe: it says when each ends). Serve 1 sees step 1
    (over while it runs) and step 2, still open at its SIGTERM. Serve 2, started next on the
    same tracer and audit log, sees step 3 — numbered 3, not 1 again: the tracer's state map
    keeps the last step id — still open at `swatch unload`. Each summary is written once, with
    what the kernel reported so far: the shell exec'd, no exit, no request closing it."""
    from test_steps import base, held_agent

    out2, out3 = tmp_path / "out2.txt", tmp_path / "out3.txt"
    cmds = [f"printf one > {conversation['out']}",
            f'read line && printf %s "$line" > {out2}', f'read line && printf %s "$line" > {out3}']
    model.script = [[("run_shell", {"cmd": c})] for c in cmds]
    agent = held_agent(conversation)
    assert agent.stdin is not None and agent.stdout is not None
    logs = [tmp_path / "events1.jsonl", tmp_path / "events2.jsonl"]
    errs = [tmp_path / "serve1.err", tmp_path / "serve2.err"]
    audit = tmp_path / "audit"
    serve = None

    def start(i: int) -> subprocess.Popen:  # type: ignore[type-arg]
        proc = _start_serve(errs[i], "--agent", "--pin-dir", str(pin_dir), "--policy-pin-dir",
                            str(new_pin_dir("none")), "--json-log", str(logs[i]),
                            "--audit-dir", str(audit))
        assert _said(errs[i], "swatch: --tls: uprobes on "), errs[i].read_text()  # streaming
        return proc

    def steps_of(i: int, event: str) -> list[dict]:  # type: ignore[type-arg]
        return [r for r in _lines(logs[i]) if r["type"] == "step" and r["event"] == event]

    def running(i: int, sid: int) -> bool:
        """Step sid's shell has exec'd (its read then waits for us)."""
        return any(r["type"] == "exec" and r.get("step") == sid for r in _lines(logs[i]))

    def say(line: str) -> None:
        agent.stdin.write(line)  # type: ignore[union-attr]
        agent.stdin.flush()  # type: ignore[union-attr]

    try:
        swatch("load", "--pid", str(agent.pid), "--pin-dir", str(pin_dir), check=True)
        serve = start(0)
        say("go\n")
        assert wait_for(lambda: running(0, 2), timeout=30), errs[0].read_text()
        assert wait_for(lambda: len(steps_of(0, "summary")) == 1, timeout=15)  # step 1: over
        assert _end(serve) == 0, errs[0].read_text()
        assert _said(errs[0], "released (serve stopping); detached"), errs[0].read_text()

        serve = start(1)
        say("x\n")  # step 2's shell reads it, writes, exits; the agent asks again
        assert wait_for(lambda: running(1, 3), timeout=30), errs[1].read_text()
        assert out2.read_text() == "x"
        swatch("unload", "--pin-dir", str(pin_dir), check=True)
        assert _said(errs[1], "unloaded; detached"), errs[1].read_text()
        say("y\n")  # step 3 ends, untraced now; the agent's last answer is text
        agent.stdin.close()
        assert agent.wait(timeout=30) == 0
        assert agent.stdout.read() == "agent: 3 turns\n" and out3.read_text() == "y"
        assert _end(serve) == 0, errs[1].read_text()
    finally:
        if serve is not None and serve.poll() is None:
            _end(serve)
        if not agent.stdin.closed:
            agent.stdin.close()  # a step's `read` ends at EOF
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    recs = [[parse_record(x) for x in log.read_text().splitlines()] for log in logs]
    starts = [[(r["step"], r["tool_calls"][0]["arguments"]["cmd"]) for r in rs
               if r["type"] == "step" and r["event"] == "start"] for rs in recs]
    assert starts == [[(1, cmds[0]), (2, cmds[1])], [(3, cmds[2])]]
    summaries = [{r["step"]: r for r in rs if r["type"] == "step" and r["event"] == "summary"}
                 for rs in recs]
    assert [sorted(s) for s in summaries] == [[1, 2], [3]]  # each once
    s1 = summaries[0][1]
    assert s1["end_ns"] is not None and [e["exit_code"] for e in s1["exits"]] == [0]
    assert s1["files_written"] == [conversation["out"]]
    # The open steps: their shell, exec'd and waiting; no exit, no request closed them.
    for rs, s, cmd in ((recs[0], summaries[0][2], cmds[1]), (recs[1], summaries[1][3], cmds[2])):
        (shell,) = [r for r in rs if r["type"] == "exec" and r.get("step") == s["step"]]
        assert s["pids"] == [{"pid": shell["pid"], "comm": "sh"}]
        assert [(base(e["filename"]), e["argv"]) for e in s["execs"]] == [
            ("sh", ["/bin/sh", "-c", cmd])]
        assert (s["exits"], s["end_ns"], s["files_written"], s["flags"]) == ([], None, [], [])
        # the last record of its serve's log (after the tracer's last records)
        assert rs[-1] == s
    # Serve 2 knew nothing of step 2: its shell's records carry no step there.
    (exit2,) = [r for r in recs[1] if r["type"] == "exit" and
                r["pid"] == summaries[0][2]["pids"][0]["pid"]]
    assert "step" not in exit2 and exit2["exit_code"] == 0

    # The audit log holds the same step records in the same order; step 3's summary comes
    # before the tracer's unload record; it verifies.
    audit_recs = read_audit(audit)
    events = [r["event"] for r in audit_recs if r["kind"] == "event"]
    assert events == [r for rs in recs for r in rs if r["type"] == "step"]
    order = [("summary", r["event"]["step"]) if r["kind"] == "event" else r["action"]
             for r in audit_recs if r["kind"] == "event" and r["event"]["event"] == "summary"
             or r["kind"] == "lifecycle" and r["component"] == "tracer"
             and r["action"] in ("load", "unload")]
    assert order == ["load", ("summary", 1), ("summary", 2), ("summary", 3), "unload"]
    r = swatch("audit", "verify", "--audit-dir", str(audit))
    assert r.returncode == 0, r.stdout + r.stderr
