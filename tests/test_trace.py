"""The whole pipeline on a workload whose syscalls are known exactly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import SWATCH, child_running, read_events, swatch, wait_for


def _syscalls(events, pid, name):  # type: ignore[no-untyped-def]
    return [e for e in events if e["type"] == "syscall" and e["pid"] == pid and e["syscall"] == name]


def test_known_workload_events_exact(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, received = listener
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(os.urandom(2000))
    out = d / "events.jsonl"
    known = workload("known")

    proc = swatch("run", "--json", "-o", str(out), "--", known, str(d), str(port))

    assert proc.returncode == 3, proc.stderr  # the workload's own exit code
    ev = read_events(out)
    execs = [e for e in ev if e["type"] == "exec"]
    assert execs[0]["filename"] == known
    assert execs[0]["argv"] == [known, str(d), str(port)]
    pid = execs[0]["pid"]

    opens = {e["path"]: e for e in _syscalls(ev, pid, "openat") if e["path"].startswith(str(d))}
    assert opens[f"{d}/input.txt"]["ret"] == 3
    assert opens[f"{d}/input.txt"]["new_fd"] == 3
    assert opens[f"{d}/output.txt"]["ret"] == 4
    assert opens[f"{d}/missing.txt"]["ret"] == -2
    assert opens[f"{d}/missing.txt"]["error"] == "ENOENT"

    reads = [e for e in _syscalls(ev, pid, "read") if e.get("fd_name") == f"{d}/input.txt"]
    assert [(r["fd"], r["ret"], r["bytes"], r["fd_kind"]) for r in reads] == [
        (3, 1234, 1234, "file"), (3, 766, 766, "file"), (3, 0, 0, "file")]

    writes = _syscalls(ev, pid, "write")
    assert [(w["fd"], w["bytes"], w["fd_name"], w["fd_kind"]) for w in writes] == [
        (4, 56, f"{d}/output.txt", "file"), (3, 6, "TCP", "tcp")]

    closes = [(c["fd"], c["fd_name"]) for c in _syscalls(ev, pid, "close")]
    assert closes[-3:] == [(3, f"{d}/input.txt"), (4, f"{d}/output.txt"), (3, "TCP")]

    sock = _syscalls(ev, pid, "socket")
    assert [s["ret"] for s in sock] == [3]
    conn = _syscalls(ev, pid, "connect")
    assert [(c["fd"], c["addr"], c["family"], c["ret"]) for c in conn] == [
        (3, f"127.0.0.1:{port}", "inet", 0)]
    # the listener's thread appends what it read on its own time: wait for it, then compare
    wait_for(lambda: received)
    assert received == [b"hello\n"]

    spawn = [e for e in ev if e["type"] == "syscall" and e["pid"] == pid and e["op"] == "SPAWN"]
    assert len(spawn) == 1
    child = spawn[0]["child_pid"]
    forks = [e for e in ev if e["type"] == "fork"]
    assert [(f["pid"], f["child_pid"]) for f in forks] == [(pid, child)]
    child_exec = [e for e in execs if e["pid"] == child]
    assert [(e["filename"], e["argv"], e["ppid"]) for e in child_exec] == [
        ("/bin/true", ["true", "--swatch-test"], pid)]

    unlinks = _syscalls(ev, pid, "unlink")
    assert [(u["path"], u["ret"]) for u in unlinks] == [(f"{d}/output.txt", 0)]

    exits = {e["pid"]: e for e in ev if e["type"] == "exit"}
    assert exits[child]["exit_code"] == 0
    assert exits[pid]["exit_code"] == 3
    assert "signal" not in exits[pid]
    # Nothing from outside the tree (the pytest process, the listener thread).
    assert {e["pid"] for e in ev} == {pid, child}
    assert f"events delivered={len(ev)} dropped=0" in proc.stderr


def test_human_lines_reference_style(tmp_path: Path, listener, workload) -> None:  # type: ignore[no-untyped-def]
    port, _ = listener
    d = Path(os.path.realpath(tmp_path))
    (d / "input.txt").write_bytes(b"a" * 2000)
    proc = swatch("run", "--color", "never", "-o", "-", "--", workload("known"), str(d),
                  str(port))
    assert proc.returncode == 3, proc.stderr
    lines = [line.split(None, 3)[3] for line in proc.stdout.splitlines()]
    expected = [
        f'OPEN    "{d}/input.txt" -> fd 3',
        f'READ    1234 bytes from "{d}/input.txt"',
        f'READ    766 bytes from "{d}/input.txt"',
        f'READ    EOF on "{d}/input.txt"',
        f'OPEN    "{d}/output.txt" -> fd 4',
        f'WRITE   56 bytes to "{d}/output.txt"',
        f'CLOSE   "{d}/input.txt"',
        f'CLOSE   "{d}/output.txt"',
        f'OPEN    "{d}/missing.txt" -> ENOENT',
        "SOCKET  -> fd 3",
        f"CONNECT fd 3 -> 127.0.0.1:{port} OK",
        'WRITE   6 bytes to "TCP"',
        'CLOSE   "TCP"',
    ]
    start = lines.index(expected[0])
    assert lines[start:start + len(expected)] == expected
    assert any(line.startswith("SPAWN   child pid ") for line in lines)
    assert any(line.startswith("FORK    parent=") for line in lines)
    # /bin/true's loader start-up is folded into its EXEC line: "(ld.so: 1 lib; ...)"
    assert any(re.fullmatch(r"EXEC    /bin/true --swatch-test \(ld\.so: .* folded\)", line)
               for line in lines), lines
    assert f'DELETE  "{d}/output.txt"' in lines
    assert lines[-1] == "EXIT    code 3"
    assert "\033[" not in proc.stdout  # no colour when not on a terminal


def test_children_followed_and_outsiders_not_traced(tmp_path: Path) -> None:
    marker_in = tmp_path / "inside-marker"
    marker_out = tmp_path / "outside-marker"
    marker_in.write_text("x")
    marker_out.write_text("y")
    out = tmp_path / "ev.jsonl"
    stop = threading.Event()

    def outsider() -> None:  # a process outside the tree, busy during the whole run
        while not stop.is_set():
            subprocess.run(["cat", str(marker_out)], capture_output=True)
            time.sleep(0.01)

    t = threading.Thread(target=outsider)
    t.start()
    try:
        proc = swatch("run", "--json", "-o", str(out), "--", "sh", "-c",
                      f"sleep 0.3; sh -c 'cat {marker_in}'")
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, proc.stderr
    ev = read_events(out)
    paths = [e.get("path") for e in ev if e["type"] == "syscall"]
    assert str(marker_in) in paths  # a grandchild's open
    assert str(marker_out) not in paths
    grandchild_execs = [e for e in ev if e["type"] == "exec" and e["filename"].endswith("/cat")]
    assert len(grandchild_execs) == 1


def test_no_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-marker"
    marker.write_text("x")
    out = tmp_path / "ev.jsonl"
    proc = swatch("run", "--no-children", "--json", "-o", str(out), "--", "sh", "-c",
                  f"cat {marker}; true")
    assert proc.returncode == 0, proc.stderr
    ev = read_events(out)
    sh_pid = next(e["pid"] for e in ev if e["type"] == "exec")
    assert {e["pid"] for e in ev} == {sh_pid}
    assert [e["type"] for e in ev if e["type"] == "fork"] == ["fork"]  # sh's fork is seen...
    assert str(marker) not in [e.get("path") for e in ev]  # ...but not what the child does


def test_threads_are_traced(tmp_path: Path) -> None:
    marker = tmp_path / "thread-marker"
    marker.write_text("x")
    out = tmp_path / "ev.jsonl"
    code = (f"import threading\n"
            f"t = threading.Thread(target=lambda: open({str(marker)!r}).read())\n"
            f"t.start(); t.join()\n")
    proc = swatch("run", "--json", "-o", str(out), "--", sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    opens = [e for e in read_events(out) if e.get("path") == str(marker)]
    assert len(opens) == 1
    assert opens[0]["tid"] != opens[0]["pid"]
    assert opens[0]["ret"] >= 3


def test_exit_code_and_signal_passed_through(tmp_path: Path) -> None:
    assert swatch("run", "--", "sh", "-c", "exit 42").returncode == 42
    out = tmp_path / "ev.jsonl"
    proc = swatch("run", "--json", "-o", str(out), "--", "sh", "-c", "kill -TERM $$")
    assert proc.returncode == 128 + 15
    exits = [e for e in read_events(out) if e["type"] == "exit"]
    assert exits[-1]["signal"] == "SIGTERM"
    assert exits[-1]["exit_code"] == -1


def test_run_interrupted_cleans_up(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to swatch) reaches CMD, swatch unloads and exits with CMD's status."""
    p = subprocess.Popen([SWATCH, "run", "--", "sleep", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    child_running(p.pid, "sleep")  # loaded, released, exec'd: the signal now reaches CMD
    p.send_signal(2)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 128 + 2, err
    assert "sleep killed by SIGINT" in err


def test_run_killed_leaves_nothing(tmp_path: Path) -> None:
    """SIGKILL to swatch itself: the kernel drops our links with our fds."""
    from conftest import our_prog_ids, wait_for
    from syscall_watcher.trace.tracer import uring_programs

    before = our_prog_ids()
    p = subprocess.Popen([SWATCH, "run", "--", "sleep", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    sleeper = 0
    try:
        assert wait_for(lambda: len(our_prog_ids() - before) == 5 + len(uring_programs()),
                        timeout=10)
        sleeper = child_running(p.pid, "sleep")
        p.kill()
        p.wait()
        assert wait_for(lambda: not (our_prog_ids() - before), timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if sleeper:  # orphaned by swatch's death: ours to end, by pid
            os.kill(sleeper, signal.SIGKILL)


SOCKETS = r"""
import os, socket, sys
port6, unix_path, udp_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.connect(("::1", port6)); s.send(b"v6"); s.close()
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.connect(unix_path); u.send(b"unix!"); u.close()
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.sendto(b"datagram", ("127.0.0.1", udp_port)); d.close()
efd = os.eventfd(0)
os.eventfd_write(efd, 7); os.eventfd_read(efd); os.close(efd)
"""


def test_socket_addresses_and_anon_inodes(tmp_path: Path) -> None:
    import socket as so

    srv6 = so.socket(so.AF_INET6, so.SOCK_STREAM)
    srv6.bind(("::1", 0))
    srv6.listen()
    unix_path = str(tmp_path / "sock")
    srvu = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    srvu.bind(unix_path)
    srvu.listen()
    udp = so.socket(so.AF_INET, so.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    out = tmp_path / "ev.jsonl"
    port6, udp_port = srv6.getsockname()[1], udp.getsockname()[1]
    try:
        proc = swatch("run", "--filter", "all", "--json", "-o", str(out), "--", sys.executable,
                      "-c", SOCKETS, str(port6), unix_path, str(udp_port))
    finally:
        srv6.close()
        srvu.close()
        udp.close()
    assert proc.returncode == 0, proc.stderr
    ev = [e for e in read_events(out) if e["type"] == "syscall"]
    conns = [(e["addr"], e["family"], e["ret"]) for e in ev if e["syscall"] == "connect"]
    assert (f"[::1]:{port6}", "inet6", 0) in conns
    assert (unix_path, "unix", 0) in conns
    sends = [(e["fd_name"], e["bytes"]) for e in ev if e["syscall"] == "sendto" and e["ret"] > 0]
    assert ("TCP", 2) in sends and ("UNIX", 5) in sends
    udp_send = [e for e in ev if e["syscall"] == "sendto" and e.get("addr")]
    assert [(e["addr"], e["fd_kind"], e["bytes"]) for e in udp_send] == [
        (f"127.0.0.1:{udp_port}", "udp", 8)]
    # eventfd traffic is runtime noise: the eventfd2 call shows, its write/read/close do not.
    efd = next(e["ret"] for e in ev if e["syscall"] == "eventfd2")
    assert efd >= 3
    assert not [e for e in ev if "eventfd" in e.get("fd_name", "")]
    assert not [e for e in ev if e.get("fd_kind") == "anon"]
