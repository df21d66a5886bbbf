"""swatch detect against the real kernel: the labelled corpus scores on the right side of the
line, the counters are exact for a workload whose every act is known, the JSON validates
against the project's schema (syscall_watcher/data/schema/records.schema.json: detect_doc,
detect_all_doc), and bad input is one line and exit 1.

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
import time
from pathlib import Path

import pytest

import test_containers as tc
from conftest import ROOT, SWATCH, check_document, our_prog_ids, swatch, wait_for
from test_containers import docker_env, make_container  # noqa: F401  (fixtures)

sys.path.insert(0, str(ROOT / "tests" / "workloads" / "detect"))
import corpus  # noqa: E402

from syscall_watcher.detect import observe, run, score  # noqa: E402
from syscall_watcher.detect.counters import LEASE_S  # noqa: E402
from syscall_watcher.kernel import syscalls  # noqa: E402
from syscall_watcher.kernel.libbpf import lib  # noqa: E402

# The test window: a few seconds, as the issue asks (the bench measures longer ones).
SAMPLES, INTERVAL = 5, 1.0


def validate(doc: dict) -> None:
    check_document("detect_all_doc" if "trees" in doc else "detect_doc", doc)


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
    assert {"endpoint": f"127.0.0.1:{port}", "connects": 4, "name": None} in ev["remote_endpoints"]
    assert {"endpoint": "127.0.0.1:9", "connects": 1, "name": None} in ev["remote_endpoints"]
    assert {"program": "true", "count": 3} in ev["top_execs"]
    res = observe.result_of(obs, "exact")
    validate(res.as_dict())
    assert res.partial and any("exited" in n for n in res.notes)


def test_detect_flag_from_header() -> None:
    """The detect markers Python writes into syscall_info are the header's SW_DT_*."""
    assert syscalls._DT_CONNECT == lib.SW_DT_CONNECT
    assert (syscalls._DT_DNS, syscalls._DT_DNS_MSG, syscalls._DT_DNS_FROM) == (
        lib.SW_DT_DNS, lib.SW_DT_DNS_MSG, lib.SW_DT_DNS_FROM)
    assert (syscalls._DT_FD_CLOSE, syscalls._DT_FD_RESET, syscalls._DT_DNS_MMSG,
            syscalls._DT_DNS_IOV) == (lib.SW_DT_FD_CLOSE, lib.SW_DT_FD_RESET,
                                      lib.SW_DT_DNS_MMSG, lib.SW_DT_DNS_IOV)
    by_name = {r.name: r for r in syscalls.rules().values()}
    assert by_name["connect"].info(False)[-1] == lib.SW_DT_CONNECT
    assert by_name["read"].info(False)[-1] == lib.SW_DT_DNS
    assert by_name["recvfrom"].info(False)[-1] == lib.SW_DT_DNS | lib.SW_DT_DNS_FROM
    assert by_name["recvmsg"].info(False)[-1] == lib.SW_DT_DNS | lib.SW_DT_DNS_MSG
    assert by_name["write"].info(False)[-1] == 0


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
        assert wait_for(lambda: len(our_prog_ids() - before) >= 5, timeout=10)  # + io_uring's
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


DNS_WORKLOAD = textwrap.dedent("""
    import ctypes, os, socket, sys
    import dns.message
    port, ns = int(sys.argv[1]), sys.argv[2]

    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    class msghdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                    ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                    ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]

    class mmsghdr(ctypes.Structure):
        _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]

    def recvmmsg(u):                              # Python has no recvmmsg: libc's
        buf = ctypes.create_string_buffer(512)
        iov = iovec(ctypes.cast(buf, ctypes.c_void_p), 512)
        msgs = (mmsghdr * 2)()
        msgs[0].hdr.iov, msgs[0].hdr.iovlen = ctypes.pointer(iov), 1
        n = ctypes.CDLL(None, use_errno=True).recvmmsg(u.fileno(), msgs, 1, 0, None)
        assert n == 1, ctypes.get_errno()
        return buf.raw[:msgs[0].len]

    def readv(u):
        buf = bytearray(512)
        return bytes(buf[:os.readv(u.fileno(), [buf])])

    def connect(ip, times=1):
        for _ in range(times):
            socket.create_connection((ip, port)).close()

    def ask(name, connected=True):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        q = dns.message.make_query(name, "A").to_wire()
        if connected:
            u.connect((ns, 53)); u.send(q)
        else:
            u.sendto(q, (ns, 53))
        return u

    def address(wire):
        return dns.message.from_wire(wire).answer[0][0].address

    # glibc's resolver (getaddrinfo: a connected UDP socket, recvfrom)
    connect(socket.getaddrinfo("api.agent.test", port, socket.AF_INET)[0][4][0], 2)
    u = ask("tools.agent.test"); connect(address(u.recvmsg(512)[0]), 2)       # recvmsg
    u = ask("files.agent.test"); connect(address(os.read(u.fileno(), 512)), 2)  # read
    u = ask("musl.agent.test", connected=False)                   # recvfrom, not connected
    connect(address(u.recvfrom(512)[0]), 2)
    u = ask("vec.agent.test"); connect(address(readv(u)), 2)        # readv
    u = ask("mmsg.agent.test"); connect(address(recvmmsg(u)), 2)    # recvmmsg
    connect("127.0.0.81")                                         # connected before ...
    u = ask("late.agent.test"); address(u.recv(512))              # ... the answer came
""")
DNS_TABLE = {"api.agent.test": "127.0.0.77", "tools.agent.test": "127.0.0.78",
             "files.agent.test": "127.0.0.79", "musl.agent.test": "127.0.0.80",
             "late.agent.test": "127.0.0.81", "vec.agent.test": "127.0.0.82",
             "mmsg.agent.test": "127.0.0.83"}
NAMESERVER = "127.0.0.153"  # a loopback address of its own: port 53 there is free


class DnsServer:
    """A tiny authoritative UDP server on NAMESERVER:53 answering DNS_TABLE's A records (an
    empty NOERROR answer for anything else, e.g. glibc's AAAA query)."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((NAMESERVER, 53))
        self.sock.settimeout(0.2)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rdatatype
        import dns.rrset

        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True)
            if question.rdtype == dns.rdatatype.A and name in DNS_TABLE:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A",
                                                        DNS_TABLE[name]))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.stopped = True
        self.thread.join()
        self.sock.close()


def test_dns_names_in_evidence(tmp_path: Path) -> None:
    """The endpoints the target connected to carry the name of the DNS answer it received
    before: through glibc's getaddrinfo (its own /etc/resolv.conf, in a mount namespace,
    pointing at a real UDP server) and through recvmsg, read, readv, recvmmsg and an
    unconnected recvfrom. An
    address connected to only before its answer came gets no name."""
    ips = sorted(DNS_TABLE.values())
    listeners = [socket.create_server((ips[0], 0))]
    port = listeners[0].getsockname()[1]  # the same port on every address
    listeners += [socket.create_server((ip, port)) for ip in ips[1:]]
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {NAMESERVER}\noptions timeout:2 attempts:1\n")
    script = tmp_path / "dns_workload.py"
    script.write_text(DNS_WORKLOAD)
    server = DnsServer()
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv),
            sys.executable, "-B", str(script), str(port), NAMESERVER]
    src = run.from_command(argv)
    try:
        obs = run.run_window(src, samples=60, interval=1.0, stop=run.StopFlag())
    finally:
        src.close()
        server.close()
        for lst in listeners:
            lst.close()
    assert obs.target_exited
    assert obs.names is not None and obs.names.lost == 0
    _w, whole = observe.window_of(obs)
    assert whole["endpoint_names"] == {
        f"127.0.0.77:{port}": "api.agent.test", f"127.0.0.78:{port}": "tools.agent.test",
        f"127.0.0.79:{port}": "files.agent.test", f"127.0.0.80:{port}": "musl.agent.test",
        f"127.0.0.82:{port}": "vec.agent.test", f"127.0.0.83:{port}": "mmsg.agent.test"}, \
        whole["endpoint_names"]
    assert whole["endpoints"][f"127.0.0.81:{port}"] == 1  # connected, but before the answer
    res = observe.result_of(obs, "dns")
    validate(res.as_dict())
    shown = [e for e in res.evidence["remote_endpoints"] if e["name"]]  # the top 5 only
    by_ip = {ip: name for name, ip in DNS_TABLE.items()}
    assert shown and all(e["connects"] == 2 and e["name"] == by_ip[e["endpoint"].split(":")[0]]
                         for e in shown), shown
    from syscall_watcher.detect import render

    assert f"{shown[0]['endpoint']} ({shown[0]['name']}) ×2" in render.render(res)


# ------------------------------------------------------------------ the lease (summary's cost)


def _file_bytes_out(pins: str, pid: int) -> tuple[int, int]:
    """(syscalls, file bytes written) the pinned tracer counted for ``pid``."""
    from syscall_watcher.detect.counters import read_procs
    from syscall_watcher.trace.tracer import PinnedSession

    s = PinnedSession.open(Path(pins))
    try:
        p = read_procs(s.processes).get(pid)
    finally:
        s.close()
    return (p.values["count"], p.values["file_bytes_out"]) if p else (0, 0)


def _lease(pins: str) -> int:
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.trace.tracer import PinnedSession

    s = PinnedSession.open(Path(pins))
    try:
        val = libbpf.new("uint64_t *")
        s.maps["detect"].lookup(libbpf.new("uint32_t *", lib.SW_DETECT_LEASE), val)
        return int(val[0])
    finally:
        s.close()


def test_file_bytes_counted_only_under_detects_lease(pin_dir: Path, tmp_path: Path) -> None:
    """A tracer `swatch load` pinned counts no file bytes (summary pays nothing for them); a
    detect run on it counts them for its window and ends its lease when it exits; a detect
    killed with SIGKILL leaves a lease that runs out on its own, and the counting stops."""
    out = tmp_path / "grows.txt"
    target = subprocess.Popen(["sh", "-c", f"while :; do echo 0123456789 >> {out}; "
                               "sleep 0.05; done"])
    pins = str(pin_dir)
    try:
        swatch("load", "--pid", str(target.pid), "--pin-dir", pins, check=True)
        wait_for(lambda: _file_bytes_out(pins, target.pid)[0] > 50, timeout=10)
        assert _file_bytes_out(pins, target.pid)[1] == 0  # no detect: not counted
        p = swatch("detect", "--pin-dir", pins, "--json", "--samples", "1", "--interval",
                   "0.6", timeout=60)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        validate(doc)
        assert "fewer than 2 samples: no burst pattern" in doc["notes"]  # a 1-sample window
        assert doc["signals"][4]["value"] is None and doc["signals"][4]["points"] == 0
        assert doc["evidence"]["files_written"][0]["file"] == "grows.txt", doc["evidence"]
        assert doc["evidence"]["files_written"][0]["bytes"] % 11 == 0
        assert _lease(pins) == 0  # released at exit
        after = _file_bytes_out(pins, target.pid)
        assert after[1] > 0 and after[1] % 11 == 0
        wait_for(lambda: _file_bytes_out(pins, target.pid)[0] > after[0] + 50, timeout=10)
        assert _file_bytes_out(pins, target.pid)[1] == after[1]  # and no more since
        # killed outright: nothing runs its cleanup, the lease runs out by itself
        killed = subprocess.Popen([SWATCH, "detect", "--pin-dir", pins, "--samples", "100"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: _lease(pins) > 0, timeout=30)
        before_kill = _file_bytes_out(pins, target.pid)[1]
        assert wait_for(lambda: _file_bytes_out(pins, target.pid)[1] > before_kill, timeout=10)
        killed.kill()
        killed.wait()
        lease = _lease(pins)
        assert 0 < lease - time.monotonic_ns() <= LEASE_S * 1e9
        assert wait_for(lambda: time.monotonic_ns() > _lease(pins), timeout=LEASE_S + 5)
        stopped = _file_bytes_out(pins, target.pid)
        wait_for(lambda: _file_bytes_out(pins, target.pid)[0] > stopped[0] + 50, timeout=10)
        assert _file_bytes_out(pins, target.pid)[1] == stopped[1]
    finally:
        target.kill()
        target.wait()


FD_REUSE_WORKLOAD = textwrap.dedent("""
    import os, sys
    out = sys.argv[1]
    sys.stdin.readline()                          # go: detect holds the lease
    r, w = os.pipe()
    for _ in range(10):                           # a pipe: its class is "other"
        os.write(w, b"p" * 100); os.read(r, 100)
    os.close(w)                                   # close ... and a regular file at its number
    f = os.open(out + ".a", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert f == w, (f, w)
    for _ in range(3):
        os.write(f, b"a" * 100)                   # 300 file bytes
    r2, w2 = os.pipe()
    os.dup2(w2, f)                                # f is a pipe now
    for _ in range(5):
        os.write(f, b"q" * 1000); os.read(r2, 1000)   # not file bytes
    os.close(f)
    g = os.open(out + ".b", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(g, b"b" * 7)                         # 7 file bytes
    z = os.open("/dev/zero", os.O_RDONLY)
    os.read(z, 1)
    print(g, z, flush=True)
    sys.stdin.readline()                          # stay until the test has looked
""")


def _fd_class(pins: str, pid: int, fd: int) -> int:
    """The class (SW_FDC_*) the pinned tracer learned for fd of process pid."""
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.trace.tracer import PinnedSession

    s = PinnedSession.open(Path(pins))
    try:
        ent = libbpf.new("struct sw_pid_slot *")
        assert s.maps["pid_slot"].lookup(libbpf.new("uint32_t *", pid), ent)
        c = libbpf.new("struct sw_fd_classes *")
        assert s.maps["fd_classes"].lookup(libbpf.new("uint32_t *", ent.slot), c)
        return (c.bits[fd // 32] >> (fd % 32 * 2)) & 3
    finally:
        s.close()


@pytest.mark.parametrize("load_args", [[], ["--no-latency"]], ids=["default", "no-latency"])
def test_fd_classes_follow_close_and_dup2(pin_dir: Path, tmp_path: Path,
                                          load_args: list[str]) -> None:
    """Under detect's lease a read/write finds its fd's class (regular file or not) once and
    the kernel remembers it per process; a close, or a dup2 over the fd, forgets it: file
    bytes are exact when one fd number is a pipe, then a file, then a pipe again. The same
    with a --no-latency tracer (sys_exit alone: the fds from the registers, the lease against
    the coarse clock)."""
    script = tmp_path / "fd_reuse.py"
    script.write_text(FD_REUSE_WORKLOAD)
    target = subprocess.Popen([sys.executable, "-S", "-B", str(script), str(tmp_path / "o")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pins = str(pin_dir)
    detect = None
    try:
        swatch("load", "--pid", str(target.pid), *load_args, "--pin-dir", pins, check=True)
        detect = subprocess.Popen([SWATCH, "detect", "--pin-dir", pins, "--samples", "1",
                                   "--interval", "60"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_for(lambda: _lease(pins) > time.monotonic_ns(), timeout=30)
        assert target.stdin is not None and target.stdout is not None
        target.stdin.write("go\n")
        target.stdin.flush()
        g, z = map(int, target.stdout.readline().split())
        assert _file_bytes_out(pins, target.pid)[1] == 307
        assert _fd_class(pins, target.pid, g) == lib.SW_FDC_FILE
        assert _fd_class(pins, target.pid, z) == lib.SW_FDC_OTHER
    finally:
        if detect is not None:
            detect.terminate()
            detect.wait()
        target.kill()
        target.wait()


# ------------------------------------------------------------------ the progress indicator


def test_progress_on_a_terminal() -> None:
    """stderr a real terminal (a pty): the progress line is drawn during the window and erased
    at the end; stdout (piped) has the result. (test_human_output_when_piped: none when piped.)"""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([SWATCH, "detect", "--samples", "2", "--interval", "0.5", "--",
                             "sh", "-c", LOOP], stdout=subprocess.PIPE, stderr=slave,
                            text=True)
    os.close(slave)
    tty = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the pty is gone
                break
            if not chunk:
                break
            tty += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, tty
    text = tty.decode()
    assert "\r  observing " in text and "/1 s " in text, text
    drawn, erase, after = text.rpartition("\r\x1b[K")
    assert erase and "observing" not in after, text  # erased at the end of the window
    assert "Score " in out and "observing" not in out


# ------------------------------------------------------------------ containers


@pytest.fixture(scope="module")
def busy_container(make_container):  # type: ignore[no-untyped-def]  # noqa: F811
    """A busybox container running an agent-like loop (a local HTTP server it calls with wget,
    commands it runs, a file it writes) in its init's session, and a second session in it
    (docker exec): (name, [pids in the container])."""
    name = f"swatch-test-detect-{os.getpid()}"
    loop = ("mkdir -p /www && echo ok > /www/index.html && httpd -p 127.0.0.1:8080 -h /www && "
            "while :; do wget -q -O /tmp/page http://127.0.0.1:8080/index.html; "
            "ls / > /tmp/ls.txt; cat /tmp/page >> /tmp/notes; sleep 0.2; done")
    make_container("sh", "-c", loop, name=name)
    tc.docker("exec", "-d", name, "sh", "-c", "while :; do cat /etc/passwd >/dev/null; "
              "sleep 0.3; done")
    init = tc.init_pid(name)

    def in_container() -> list[int]:
        cg = tc.unified_path_of(init)
        return [int(p) for p in os.listdir("/proc") if p.isdigit()
                and _cgroup_of(int(p)) == cg]

    assert wait_for(lambda: len({_sid(p) for p in in_container()} - {None}) >= 2, timeout=30)
    yield name, in_container()
    # Its loop never ends: removed with this module, not at session end, so it does not load
    # the machine under the tests after it (make_container removes it again there, harmlessly).
    tc.docker("rm", "-f", "-v", name, check=False)


def _cgroup_of(pid: int) -> str | None:
    try:
        return tc.unified_path_of(pid)
    except (OSError, ValueError):
        return None


def _sid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except OSError:
        return None  # gone meanwhile


def test_container_target(busy_container: tuple[str, list[int]]) -> None:
    """--container NAME: the container's processes, whatever their session, are the target."""
    name, _pids = busy_container
    p = swatch("detect", "--container", name, "--json", "--samples", "2", "--interval", "0.5",
               timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    assert name in doc["target"] and not doc["partial"]
    # busybox's shell runs its applets by exec'ing /proc/self/exe: they are all "exe"
    assert doc["evidence"]["top_execs"][0]["count"] >= 2, doc["evidence"]
    assert {"endpoint": "127.0.0.1:8080", "connects": doc["evidence"]["remote_endpoints"][0][
        "connects"], "name": None} == doc["evidence"]["remote_endpoints"][0], doc["evidence"]
    assert "notes" in {e["file"] for e in doc["evidence"]["files_written"]}, doc["evidence"]


def test_all_groups_a_container_into_one_tree(busy_container: tuple[str, list[int]]) -> None:
    """--all: the container is one row named by the container (its processes are in two
    sessions), a host session beside it is its own row."""
    name, pids = busy_container
    host = subprocess.Popen(["sh", "-c", "while :; do ls / >/dev/null; sleep 0.2; done"],
                            start_new_session=True)
    try:
        p = swatch("detect", "--all", "--json", "--top", "1000", "--samples", "2",
                   "--interval", "0.5", timeout=120)
    finally:
        host.kill()
        host.wait()
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    validate(doc)
    ours = [t for t in doc["trees"] if t["kind"] == "container"
            and t["container"]["name"] == name]
    assert len(ours) == 1, [t["target"] for t in doc["trees"]]
    row = ours[0]
    assert row["target"] == f"container {name} ({row['container']['id']})"
    assert row["session"] is None and row["processes"] >= 3
    container_sids = {_sid(p) for p in pids} - {None}
    assert not [t for t in doc["trees"] if t["session"] in container_sids]
    host_rows = [t for t in doc["trees"] if t["session"] == host.pid]
    assert len(host_rows) == 1 and host_rows[0]["kind"] == "session", doc["trees"]
    # the loop alternates ls and sleep: a window's edges can cut one of either
    execs = {e["program"]: e["count"] for e in host_rows[0]["evidence"]["top_execs"]}
    assert execs.keys() >= {"ls", "sleep"} and execs["ls"] >= 2, execs
    assert abs(execs["ls"] - execs["sleep"]) <= 1, execs


def test_readme_tables_are_the_schemas() -> None:
    """README's `detect --json` field tables are generated from the schema."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("schema_tables",
                                                  ROOT / "tools" / "schema_tables.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    readme = (ROOT / "README.md").read_text()
    assert mod.readme_block(readme, mod.DETECT_BEGIN, mod.DETECT_END) == \
        mod.detect_tables(mod.json.loads(mod.SCHEMA.read_text())), \
        "README.md's detect tables differ from the schema: run tools/schema_tables.py --write"


def test_dns_parse_cname_chain_and_tcp_prefix() -> None:
    """The name kept is the one asked for, through a CNAME chain; a TCP message's 2-byte length
    is skipped; a query, a cut message or an error answer gives no name."""
    import dns.message
    import dns.rcode
    import dns.rrset

    from syscall_watcher.detect.dns import parse

    query = dns.message.make_query("example.com", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "CNAME", "edge.cdn.net."))
    reply.answer.append(dns.rrset.from_text("edge.cdn.net.", 60, "IN", "A", "93.184.216.34"))
    wire = reply.to_wire()
    assert parse(wire) == ("example.com", ["93.184.216.34"])
    assert parse(len(wire).to_bytes(2, "big") + wire) == ("example.com", ["93.184.216.34"])
    assert parse(query.to_wire()) is None
    assert parse(wire[:20]) is None
    failed = dns.message.make_response(query)
    failed.set_rcode(dns.rcode.NXDOMAIN)
    assert parse(failed.to_wire()) is None
