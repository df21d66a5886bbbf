"""swatch detect against the real kernel: the labelled corpus scores on the right side of the
line, the counters are exact for a workload whose every act is known, the JSON validates
against schema/detect.schema.json, and bad input is one line and exit 1.

Run under the kernel lock (it loads the tracer):
    flock /tmp/swatch-kernel.lock .venv/bin/python -m pytest -q tests/test_detect.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, SWATCH, our_prog_ids, swatch, wait_for

sys.path.insert(0, str(ROOT / "tests" / "workloads" / "detect"))
import corpus  # noqa: E402

from syscall_watcher.detect import observe, run, score  # noqa: E402
from syscall_watcher.kernel import syscalls  # noqa: E402
from syscall_watcher.kernel.libbpf import lib  # noqa: E402

SCHEMA = json.loads((ROOT / "schema" / "detect.schema.json").read_text())
# The test window: a few seconds, as the issue asks (the bench measures longer ones).
SAMPLES, INTERVAL = 5, 1.0


def validate(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.fixture(scope="module")
def llm_server():
    srv = corpus.start_server()
    yield srv.ready
    srv.stop()


@pytest.mark.parametrize("workload", corpus.CORPUS, ids=[w.name for w in corpus.CORPUS])
def test_corpus_scores(workload: corpus.Workload, llm_server: str, tmp_path: Path) -> None:
    """Every agent of the corpus is LIKELY or more (>= 66), every non-agent UNLIKELY or less
    (<= 45), over a 5 s window through the real kernel counters (seed 1)."""
    running = corpus.start(workload, llm_server, tmp_path / "work", seed=1, seconds=60)
    try:
        before = our_prog_ids()
        p = swatch("detect", "--pid", str(running.pid), "--samples", str(SAMPLES),
                   "--interval", str(INTERVAL), "--json", timeout=60)
    finally:
        running.stop()
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    assert doc["samples"] == SAMPLES and not doc["partial"]
    assert doc["target"] == f"pid {running.pid}"
    assert doc["score"] == sum(s["points"] for s in doc["signals"])
    if workload.agent:
        assert doc["score"] >= score.AGENT_THRESHOLD, doc
        # the evidence names what the agent did: the model's endpoint, the tools it ran
        port = llm_server.rsplit(":", 1)[1]
        assert any(e["endpoint"] == f"127.0.0.1:{port}"
                   for e in doc["evidence"]["remote_endpoints"]), doc["evidence"]
        assert doc["evidence"]["top_execs"], doc["evidence"]
    else:
        assert doc["score"] <= 45, doc
    if workload.name == "idle-shell":
        assert doc["score"] == 0 and doc["verdict"] == "NOT AN AGENT"
        assert any("no activity" in n for n in doc["notes"]), doc["notes"]
    if workload.name == "coding-agent":
        written = {e["file"] for e in doc["evidence"]["files_written"]}
        assert written & {"calc.py", "NOTES.md", "transcript.jsonl"}, written
    if workload.name == "c-build":
        assert doc["signals"][1]["value"] == 0.0  # execs, and not one connect
    # detect unloaded what it loaded (the kernel frees a program after an RCU grace period)
    assert wait_for(lambda: our_prog_ids() == before, timeout=10)


EXACT = textwrap.dedent("""
    import os, socket, sys
    port, upath, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    for _ in range(3):                                  # 3 execs, 3 short-lived children
        pid = os.posix_spawn("/bin/true", ["true"], {})
        os.waitpid(pid, 0)
    for _ in range(4):                                  # 4 TCP connects
        s = socket.create_connection(("127.0.0.1", port)); s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("127.0.0.1", 9)); u.close()
    x = socket.socket(socket.AF_UNIX); x.connect(upath); x.close()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"a" * 5000); os.write(fd, b"b" * 1234); os.close(fd)
    fd = os.open(out, os.O_RDONLY); os.read(fd, 100); os.close(fd)
""")


def test_counters_exact(tmp_path: Path) -> None:
    """A command whose every exec, fork, connect and file write is known: the kernel's counts
    for the window are exactly those, and so is the evidence."""
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    unix_path = str(tmp_path / "u.sock")
    ux = socket.socket(socket.AF_UNIX)
    ux.bind(unix_path)
    ux.listen(8)
    out = tmp_path / "exact-out.bin"
    script = tmp_path / "exact.py"
    script.write_text(EXACT)
    argv = [sys.executable, "-B", "-S", str(script), str(port), unix_path,
            str(out)]
    src = run.from_command(argv)
    try:
        obs = run.run_window(src, samples=60, interval=1.0, stop=run.StopFlag())
    finally:
        src.close()
        tcp.close()
        ux.close()
    assert obs.target_exited and not obs.interrupted
    w, whole = observe.window_of(obs)
    assert w.execs == 4          # the command itself (counted from its first syscall) + 3
    assert w.short_lived == 4 and w.exited == 4 and w.forks == 3
    assert w.connects_tcp == 4 and w.connects_udp == 1 and w.connects_unix == 1
    assert w.connects_other == 0
    assert w.file_bytes_out == 6234
    ev = observe.evidence_of(whole)
    assert ev["files_written"] == [{"file": "exact-out.bin", "bytes": 6234}]
    assert {"endpoint": f"127.0.0.1:{port}", "connects": 4} in ev["remote_endpoints"]
    assert {"endpoint": "127.0.0.1:9", "connects": 1} in ev["remote_endpoints"]
    assert {"program": "true", "count": 3} in ev["top_execs"]
    res = observe.result_of(obs, "exact")
    validate(res.as_dict())
    assert res.partial and any("exited" in n for n in res.notes)


def test_detect_flag_from_header() -> None:
    """The connect marker Python writes into syscall_info is the header's SW_DT_CONNECT."""
    assert syscalls._DT_CONNECT == lib.SW_DT_CONNECT
    connect = next(r for r in syscalls.rules().values() if r.name == "connect")
    assert connect.info(False)[-1] == lib.SW_DT_CONNECT
    read = next(r for r in syscalls.rules().values() if r.name == "read")
    assert read.info(False)[-1] == 0


def test_command_exits_mid_window() -> None:
    """-- CMD that ends before the window: the score of what was seen, said to be partial."""
    p = swatch("detect", "--json", "--samples", "30", "--interval", "1", "--",
               "sh", "-c", "ls / >/dev/null; true", timeout=60)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    assert doc["partial"] and doc["window_s"] < 30
    assert any("exited" in n for n in doc["notes"]), doc["notes"]
    assert {"program": "ls", "count": 1} in doc["evidence"]["top_execs"]


def _holds_bpf_link(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link"
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_window_prints_partial(sig: int) -> None:
    """Ctrl-C or SIGTERM mid-window: the partial score is printed, what detect loaded is gone."""
    before = our_prog_ids()
    with tempfile.NamedTemporaryFile(prefix="swatch-detect-ticks-") as ticks_file:
        _signal_mid_window(sig, before, ticks_file.name)


def _signal_mid_window(sig: int, before: set[int], ticks: str) -> None:
    # each round execs ls and appends a line to `ticks`: rounds after the load are in the window
    target = subprocess.Popen(["sh", "-c", f"while :; do ls / >/dev/null; echo >> {ticks}; "
                               "sleep 0.2; done"], start_new_session=True)

    def rounds() -> int:
        return Path(ticks).read_text().count("\n")

    proc = subprocess.Popen([SWATCH, "detect", "--json", "--pid", str(target.pid),
                             "--samples", "100", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _holds_bpf_link(proc.pid), timeout=30)
        assert wait_for(lambda: len(our_prog_ids() - before) == 5, timeout=10)
        loaded = rounds()
        assert wait_for(lambda: rounds() >= loaded + 2, timeout=10)  # an ls inside the window
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.killpg(target.pid, signal.SIGKILL)
        target.wait()
    assert proc.returncode == 128 + sig, err
    doc = json.loads(out)
    validate(doc)
    assert doc["partial"] and any("interrupted" in n for n in doc["notes"])
    assert {e["program"] for e in doc["evidence"]["top_execs"]} >= {"ls"}
    assert wait_for(lambda: our_prog_ids() == before, timeout=10)


def test_all_ranks_the_agent(llm_server: str, tmp_path: Path) -> None:
    """--all: the coding agent's session is found without its pid, and scores as an agent."""
    running = corpus.start(corpus.BY_NAME["coding-agent"], llm_server, tmp_path / "w", seed=1,
                           seconds=60)
    try:
        p = swatch("detect", "--all", "--json", "--top", "50", "--samples", str(SAMPLES),
                   "--interval", str(INTERVAL), timeout=60)
    finally:
        running.stop()
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    ours = [t for t in doc["trees"] if t["session"] == running.proc.pid]
    assert ours, [(t["session"], t["target"], t["score"]) for t in doc["trees"]]
    assert ours[0]["score"] >= score.AGENT_THRESHOLD, ours[0]
    scores = [t["score"] for t in doc["trees"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("args,message", [
    (["--pid", "999999999"], "no such process"),
    (["--pid", "1", "--samples", "0"], "--samples 0"),
    (["--pid", "1", "--interval", "-1"], "--interval -1"),
    (["--pid", "1", "--interval", "nan"], "--interval nan"),
    (["--pid", "1", "--all"], "choose one target"),
    (["--all", "--top", "0"], "--top 0"),
    (["--", "/nonexistent/agent"], "command not found"),
], ids=["no-such-pid", "samples-0", "interval-negative", "interval-nan", "two-targets",
        "top-0", "no-such-command"])
def test_bad_input(args: list[str], message: str) -> None:
    before = our_prog_ids()
    p = swatch("detect", *args)
    assert p.returncode == 1
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("swatch: error: ") and message in lines[0], \
        p.stderr
    assert wait_for(lambda: our_prog_ids() == before, timeout=10)


def test_nothing_loaded_and_no_target() -> None:
    with tempfile.TemporaryDirectory() as d:
        pin_dir = "/sys/fs/bpf/swatch-test-detect-none-" + os.path.basename(d)
        p = swatch("detect", "--pin-dir", pin_dir)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "nothing to observe" in p.stderr, p.stderr


LOOP = "for i in 1 2 3 4 5 6; do ls / >/dev/null; sleep 0.5; done"


def test_watch_scores_window_after_window() -> None:
    """--watch --json: one object per window until the command is gone (the last one partial)."""
    p = swatch("detect", "--watch", "--json", "--samples", "2", "--interval", "0.5", "--",
               "sh", "-c", LOOP, timeout=60)
    assert p.returncode == 0, p.stderr
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) >= 2, p.stdout
    for doc in docs:
        validate(doc)
    assert all(not d["partial"] for d in docs[:-1]) and docs[-1]["partial"]
    assert sum(e["count"] for d in docs for e in d["evidence"]["top_execs"]
               if e["program"] == "ls") == 6


def test_human_output_when_piped() -> None:
    """The human layout: score and verdict, one bar per signal, the evidence; no progress bar
    when stderr is not a terminal."""
    p = swatch("detect", "--samples", "2", "--interval", "0.5", "--", "sh", "-c", LOOP,
               timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("swatch detect — sh (pid ")
    score_line = next(x for x in lines if x.startswith("Score "))
    value, verdict = score_line[len("Score "):].split("/100 — ")
    assert 0 <= int(value) <= 100 and verdict == score.verdict(int(value))
    for label in ("Execve Rate", "Connect:Execve Ratio", "Fork Fan-Out", "Read-Write Churn",
                  "Burst Pattern"):
        assert any(x.lstrip().startswith(label) for x in lines), label
    assert any(x.strip().startswith("programs run") and "ls ×" in x for x in lines), lines
    assert "\r" not in p.stderr and "observing" not in p.stderr


def test_evidence_overflow_is_counted_and_said() -> None:
    """More endpoints than the kernel's evidence table holds (1024): the connects are all
    counted, the endpoints that found no room are counted and the JSON says how many."""
    code = ("import socket\n"
            "for port in range(20000, 21100):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.connect(('127.0.0.1', port)); s.close()\n")
    p = swatch("detect", "--json", "--samples", "60", "--interval", "1", "--",
               sys.executable, "-S", "-c", code, timeout=90)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    assert "76 endpoints or written files were not kept as evidence (its tables are full)" \
        in doc["notes"], doc["notes"]
    assert len(doc["evidence"]["remote_endpoints"]) == 5
