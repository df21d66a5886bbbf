"""The preventive tiers (BPF LSM, fmod_ret on security_*), inside a VM with a stock kernel.

Run by tests/test_policy_vm.py, once per VM boot:
    tools/vm-run.sh bpf-lsm    env SWATCH_IN_VM=1 SWATCH_VM_TIER=lsm      pytest -m vm_inner ...
    tools/vm-run.sh no-bpf-lsm env SWATCH_IN_VM=1 SWATCH_VM_TIER=fmod_ret pytest -m vm_inner ...
Skipped anywhere else. Every operation must fail with EPERM *before* it happens: the file is
still there after rm, the connect never reaches the listener, and the process lives on.
The target reports what each attempt returned through a socketpair made before the load."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bypass_cases import GRANDCHILD
from conftest import WORKLOADS
from syscall_watcher.policy import enforcer
from syscall_watcher.policy.language import load_policy
from syscall_watcher.targets.target import Target

pytestmark = [
    pytest.mark.vm_inner,
    pytest.mark.skipif(os.environ.get("SWATCH_IN_VM") != "1",
                       reason="runs inside the VM (tests/test_policy_vm.py boots it)"),
]

TIER = os.environ.get("SWATCH_VM_TIER", "lsm")
TIER_WORDS = {"lsm": "blocked before (BPF LSM", "fmod_ret": "blocked before (fmod_ret"}
EPERM = errno.EPERM

HEADER = r"""
import errno, json, os, socket, sys, threading
R = {}
rep = socket.socket(fileno=int(os.environ["REPORT_FD"]))
def attempt(name, fn, *a):
    try:
        fn(*a)
        R[name] = 0
    except OSError as e:
        R[name] = e.errno
def in_grandchild(name, fn, *a):
    R[name] = grandchild(fn, *a)
def in_thread(name, fn, *a):
    t = threading.Thread(target=attempt, args=(name, fn) + a)
    t.start()
    t.join()
def write_fd(fd, data=b"x"):
    os.write(fd, data)
def open_w(path, flags=os.O_WRONLY):
    os.close(os.open(path, flags, 0o644))
""" + GRANDCHILD


@pytest.fixture
def ppin():  # type: ignore[no-untyped-def]
    """A private policy pin dir, unloaded afterwards. The core API, not the CLI, drives the
    enforcer here: under software emulation each CLI start costs tens of seconds (the host
    tests cover the CLI)."""
    d = Path(f"/sys/fs/bpf/swatch-test-policy-{uuid.uuid4().hex[:10]}")
    yield d
    enforcer.unload(d)
    assert not d.exists()


def run_target(ppin: Path, policy: str, before: str, after: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    """Start a target that runs `before`, waits, then (policy loaded) runs `after` and reports."""
    ours, theirs = socket.socketpair()
    r, w = os.pipe()
    code = HEADER + before + "\nrep.sendall(b'R')\nsys.stdin.readline()\n" + after + \
        "\nrep.sendall(json.dumps(R).encode())\nrep.close()\n"
    proc = subprocess.Popen([sys.executable, "-B", "-c", code], stdin=r,
                            pass_fds=(theirs.fileno(),),
                            env={**os.environ, "REPORT_FD": str(theirs.fileno())},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(r)
    theirs.close()
    # The target says when it is running (exec'd, `before` done): a policy loaded earlier
    # would police the interpreter's own start.
    ours.settimeout(300)
    assert ours.recv(1) == b"R", proc.communicate()
    pol = load_policy(policy)
    # Every operation of the built-ins is preventive here: --require-preventive must load.
    _, plans = enforcer.load_pinned(pol, Target(mode="pid", pid=proc.pid,
                                                label=f"pid {proc.pid}"), ppin,
                                    require_preventive=True)
    load_out = "".join(f"{p.op}: {p.describe(pol)}\n" for p in plans)
    os.write(w, b"go\n")
    os.close(w)
    data = b""
    while chunk := ours.recv(65536):
        data += chunk
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"target died ({proc.returncode}): {err}"
    return json.loads(data), load_out


def summary(ppin: Path) -> dict:  # type: ignore[type-arg]
    session = enforcer.PinnedPolicy.open(ppin)
    try:
        return enforcer.summary(session)
    finally:
        session.close()


def denials(ppin: Path) -> list[dict]:  # type: ignore[type-arg]
    """The denial records in the policy's ring buffer (kept there until someone reads them)."""
    from syscall_watcher.policy.denials import read_denials

    session = enforcer.PinnedPolicy.open(ppin)
    try:
        return [d for d in read_denials(session) if d["type"] == "denied"]
    finally:
        session.close()


def assert_tier(load_out: str, ops: list[str]) -> None:
    for op in ops:
        assert f"{op}: {TIER_WORDS[TIER]}" in load_out, load_out


@pytest.fixture
def scratch_dir():  # type: ignore[no-untyped-def]
    d = Path(f"/tmp/swatch-vm-{uuid.uuid4().hex[:8]}")
    (d / "prot" / "sub").mkdir(parents=True)
    (d / "out").mkdir()
    (d / "prot" / "f").write_text("original\n")
    (d / "out" / "x").write_text("movable\n")
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def test_vm_kernel_has_the_tier() -> None:
    lsm = Path("/sys/kernel/security/lsm")
    if not lsm.exists():
        subprocess.run(["mount", "-t", "securityfs", "securityfs", "/sys/kernel/security"])
    assert ("bpf" in lsm.read_text().split(",")) == (TIER == "lsm")


def test_no_network_blocked_before(ppin: Path, listener) -> None:  # type: ignore[no-untyped-def]
    port, received = listener
    res, out = run_target(ppin, "no-network", f"""
tcp = socket.socket()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket()
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
""", f"""
attempt("socket_inet", socket.socket)
attempt("socket_unix", socket.socket, socket.AF_UNIX)
attempt("connect", tcp.connect, ("127.0.0.1", {port}))
attempt("sendto", udp.sendto, b"x", ("127.0.0.1", {port}))
attempt("bind", b.bind, ("127.0.0.1", 0))
attempt("listen", srv.listen)
in_grandchild("grandchild_socket", socket.socket)
in_thread("thread_connect", tcp.connect, ("127.0.0.1", {port}))
""")
    assert_tier(out, ["connect", "socket", "bind", "listen"])
    assert res == {k: EPERM for k in res} and len(res) == 8, res
    assert received == []  # nothing reached the listener (the bystander below is the barrier:
    # outside the target: unaffected
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"bystander")
    s.close()
    assert wait_for_list(received) == [b"bystander"]  # …queued after the target's attempts)
    sm = summary(ppin)
    assert sm["denials"]["socket"] == 3 and sm["denials"]["connect"] == 3, sm
    assert sm["tiers"]["connect"] == TIER


def wait_for_list(lst: list, timeout: float = 3) -> list:  # type: ignore[type-arg]
    end = time.monotonic() + timeout
    while not lst and time.monotonic() < end:
        time.sleep(0.05)
    return lst


def test_no_exec_blocked_before(ppin: Path) -> None:
    res, out = run_target(ppin, "no-exec", "", """
attempt("execve", os.execv, "/bin/true", ["true"])
fd = os.open("/bin/true", os.O_RDONLY)
attempt("fexecve", os.execve, fd, ["true"], {})
in_grandchild("grandchild_exec", os.execv, "/bin/true", ["true"])
in_thread("thread_exec", os.execv, "/bin/true", ["true"])
pid = os.fork()
if pid == 0:
    os._exit(5)
R["fork_allowed"] = os.WEXITSTATUS(os.waitpid(pid, 0)[1])
""")
    assert_tier(out, ["exec"])
    assert res == {"execve": EPERM, "fexecve": EPERM, "grandchild_exec": EPERM,
                   "thread_exec": EPERM, "fork_allowed": 5}, res
    assert summary(ppin)["denials"]["exec"] == 4
    d = denials(ppin)
    assert len(d) == 4
    assert {(e["op"], e["target"], e["action"], e["tier"]) for e in d} == {
        ("exec", "/usr/bin/true", "blocked", TIER)}, d  # the kernel's path: /bin is a symlink


def test_read_only_fs_blocked_before(ppin: Path, scratch_dir: Path) -> None:
    d = scratch_dir
    res, out = run_target(ppin, "read-only-fs", f"""
fd = os.open("{d}/prot/f", os.O_WRONLY | os.O_APPEND)
pr, pw = os.pipe()
""", f"""
attempt("write_open_fd", write_fd, fd)
attempt("write_pipe", write_fd, pw)
attempt("open_trunc", open_w, "{d}/prot/f", os.O_WRONLY | os.O_TRUNC)
attempt("create", open_w, "{d}/out/new", os.O_WRONLY | os.O_CREAT)
attempt("unlink", os.unlink, "{d}/prot/f")
attempt("rename", os.rename, "{d}/out/x", "{d}/out/y")
attempt("mkdir", os.mkdir, "{d}/out/m")
attempt("rmdir", os.rmdir, "{d}/prot/sub")
R["read_ok"] = open("{d}/prot/f").read() == "original\\n"
""")
    assert_tier(out, ["unlink", "rename", "mkdir", "rmdir", "write"])
    expected = {k: EPERM for k in ("write_open_fd", "write_pipe", "open_trunc", "create",
                                   "unlink", "rename", "mkdir", "rmdir")}
    assert res == {**expected, "read_ok": True}, res
    assert (d / "prot" / "f").read_text() == "original\n"
    assert (d / "prot" / "sub").is_dir() and (d / "out" / "x").exists()
    assert not (d / "out" / "new").exists() and not (d / "out" / "m").exists()


def test_protect_system_blocked_before(ppin: Path, scratch_dir: Path) -> None:
    etc = Path(f"/etc/swatch-vm-{uuid.uuid4().hex[:6]}")
    etc.write_text("original\n")
    etcdir = Path(f"/etc/swatch-vm-dir-{uuid.uuid4().hex[:6]}")
    etcdir.mkdir()
    d = scratch_dir
    try:
        res, out = run_target(ppin, "protect-system", f"""
fd = os.open("{etc}", os.O_RDONLY)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
""", f"""
attempt("open_append", open_w, "{etc}", os.O_WRONLY | os.O_APPEND)
attempt("create", open_w, "/etc/swatch-vm-new", os.O_WRONLY | os.O_CREAT)
attempt("unlink", os.unlink, "{etc}")
attempt("rename", os.rename, "{etc}", "/etc/swatch-vm-renamed")
attempt("mkdir", os.mkdir, "/etc/swatch-vm-mkdir")
attempt("rmdir", os.rmdir, "{etcdir}")
attempt("usr_create", open_w, "/usr/swatch-vm-new", os.O_WRONLY | os.O_CREAT)
attempt("bind", socket.socket().bind, ("127.0.0.1", 0))
attempt("listen", srv.listen)
# allowed: the same outside /etc, /usr, /boot
attempt("tmp_write", open_w, "{d}/out/ok", os.O_WRONLY | os.O_CREAT)
attempt("tmp_unlink", os.unlink, "{d}/out/ok")
attempt("tmp_mkdir", os.mkdir, "{d}/out/m")
attempt("etc_read", os.read, fd, 10)
""")
        assert_tier(out, ["bind", "listen", "unlink", "rename", "mkdir", "rmdir", "write"])
        denied = ("open_append", "create", "unlink", "rename", "mkdir", "rmdir",
                  "usr_create", "bind", "listen")
        assert res == {**{k: EPERM for k in denied}, "tmp_write": 0, "tmp_unlink": 0,
                       "tmp_mkdir": 0, "etc_read": 0}, res
        assert etc.read_text() == "original\n" and etcdir.is_dir()
        assert not Path("/etc/swatch-vm-renamed").exists()
        assert not Path("/etc/swatch-vm-new").exists()
        rules = {r["path"]: r["denials"] for r in summary(ppin)["rules"]}
        assert rules["/etc"] == 6 and rules["/usr"] == 1, rules
    finally:
        etc.unlink(missing_ok=True)
        etcdir.rmdir()


def test_bypasses_blocked_before(ppin: Path, scratch_dir: Path, tmp_path: Path) -> None:
    d = scratch_dir
    pol = d / "bypass.policy"
    pol.write_text(f"protect {d}/prot write unlink rename mkdir rmdir\nprotect /etc file_open\n")
    (d / "out" / "sl").symlink_to(d / "prot" / "f")
    uring = WORKLOADS / "uring_open"
    ops = WORKLOADS / "uring_ops"
    res, out = run_target(ppin, str(pol), f"""
dfd = os.open("{d}/prot", os.O_RDONLY | os.O_DIRECTORY)
import subprocess
""", f"""
attempt("symlink_write", open_w, "{d}/out/sl", os.O_WRONLY | os.O_APPEND)
attempt("hardlink", os.link, "{d}/prot/f", "{d}/out/h")
os.chdir("{d}/prot")
attempt("relative_unlink", os.unlink, "f")
attempt("proc_cwd_unlink", os.unlink, "/proc/self/cwd/f")
os.chdir("/")
attempt("dirfd_open", lambda: os.close(os.open("f", os.O_WRONLY, dir_fd=dfd)))
attempt("dirfd_unlink", lambda: os.unlink("f", dir_fd=dfd))
attempt("dotdot_unlink", os.unlink, "{d}/out/../prot/f")
attempt("rename_into", os.rename, "{d}/out/x", "{d}/prot/x")
attempt("mkdir_sub", os.mkdir, "{d}/prot/sub/m")
in_grandchild("grandchild_unlink", os.unlink, "{d}/prot/f")
in_thread("thread_unlink", os.unlink, "{d}/prot/f")
attempt("etc_open_read", lambda: os.close(os.open("/etc/hostname", os.O_RDONLY)))
R["uring_open"] = subprocess.run(["{uring}", "{d}/prot/f"]).returncode if os.path.exists(
    "{uring}") else "missing"
R["uring_open_etc"] = subprocess.run(["{uring}", "/etc/hostname", "r"]).returncode \
    if os.path.exists("{uring}") else "missing"
# liburing: an open for writing from an SQPOLL ring (the kernel's thread submits), an unlink
# and a mkdir through a ring
R["uring_sqpoll_openw"] = subprocess.run(
    ["{ops}", "one", "openw", "{d}/prot/f", "sqpoll"]).returncode
R["uring_unlink"] = subprocess.run(["{ops}", "one", "unlink", "{d}/prot/f"]).returncode
R["uring_mkdir"] = subprocess.run(["{ops}", "one", "mkdir", "{d}/prot/m"]).returncode
""")
    assert_tier(out, ["file_open", "unlink", "rename", "mkdir", "rmdir", "write"])
    expected = {k: EPERM for k in (
        "symlink_write", "hardlink", "relative_unlink", "proc_cwd_unlink", "dirfd_open",
        "dirfd_unlink", "dotdot_unlink", "rename_into", "mkdir_sub", "grandchild_unlink",
        "thread_unlink", "etc_open_read", "uring_open", "uring_open_etc", "uring_sqpoll_openw",
        "uring_unlink", "uring_mkdir")}
    assert res == expected, res
    assert (d / "prot" / "f").read_text() == "original\n"
    assert not (d / "out" / "h").exists() and (d / "out" / "x").exists()
    # reported under the kernel's resolved path, whatever the process passed
    unlinks = [e["target"] for e in denials(ppin) if e["op"] == "unlink"]
    # (the six unlinks above, and the one through a ring)
    assert len(unlinks) == 7 and set(unlinks) == {f"{d}/prot/f"}, unlinks


def test_kill_fork_read_blocked_before(ppin: Path, scratch_dir: Path) -> None:
    d = scratch_dir
    pol = d / "kfr.policy"
    pol.write_text(f"block kill fork\nprotect {d}/prot read\n")
    victim = subprocess.Popen(["sleep", "60"])
    try:
        res, out = run_target(ppin, str(pol), f"""
fd = os.open("{d}/prot/f", os.O_RDONLY)
ok = os.open("{d}/out/x", os.O_RDONLY)
""", f"""
attempt("kill_other", os.kill, {victim.pid}, 15)
attempt("kill_self_probe", os.kill, os.getpid(), 0)
attempt("fork", os.fork)
try:
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    R["thread"] = 0
except RuntimeError:
    R["thread"] = "refused"
attempt("read_protected", os.read, fd, 10)
attempt("read_other", os.read, ok, 10)
""")
        assert_tier(out, ["kill", "fork", "read"])
        assert res == {"kill_other": EPERM, "kill_self_probe": 0, "fork": EPERM,
                       "thread": "refused", "read_protected": EPERM, "read_other": 0}, res
        assert victim.poll() is None  # the signal never arrived
        sm = summary(ppin)
        assert sm["denials"]["kill"] == 1 and sm["denials"]["fork"] == 2
    finally:
        victim.kill()
        victim.wait()


# --------------------------------------------------------------------------- the bypass table


@pytest.fixture(scope="module")
def bypass_results():  # type: ignore[no-untyped-def]
    """Every case of docs/policy.md's bypass table, run once per policy by one target each,
    against this VM's tier: case id → what the attempt returned (0, or its errno)."""
    import bypass_cases as bc

    d = Path(f"/tmp/swatch-vm-bypass-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    results: dict[str, int] = {}
    try:
        for kind in ("files", "connect"):
            cases = [c for c in bc.CASES if c.policy == kind]
            bc.make_tree(d, cases)
            pol = d / f"{kind}.policy"
            pol.write_text(bc.policy_text(kind, d))
            pin = Path(f"/sys/fs/bpf/swatch-test-bypass-{uuid.uuid4().hex[:10]}")
            ours, theirs = socket.socketpair()
            r, w = os.pipe()
            proc = subprocess.Popen(
                [sys.executable, "-B", "-c",
                 bc.target_program(cases, d, str(WORKLOADS / "uring_open"))],
                stdin=r, pass_fds=(theirs.fileno(),),
                env={**os.environ, "REPORT_FD": str(theirs.fileno())},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.close(r)
            theirs.close()
            try:
                assert proc.stdout is not None
                ready = proc.stdout.readline()  # its setup (fds, sockets, maps) is done
                assert ready == "ready\n", ready
                _, plans = enforcer.load_pinned(
                    load_policy(str(pol)), Target(mode="pid", pid=proc.pid,
                                                  label=f"pid {proc.pid}"), pin,
                    require_preventive=True)
                assert {p.tier for p in plans} == {TIER}, plans
                os.write(w, b"go\n")
                os.close(w)
                data = b""
                ours.settimeout(600)
                while chunk := ours.recv(65536):
                    data += chunk
                _, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, f"target died ({proc.returncode}): {err}"
                results.update(json.loads(data))
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                enforcer.unload(pin)
        yield results, d
    finally:
        subprocess.run(["rm", "-rf", str(d)])


def _bypass_ids() -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    import bypass_cases as bc

    return [c.id for c in bc.CASES]


@pytest.mark.parametrize("case_id", _bypass_ids())
def test_bypass_case(bypass_results, case_id: str) -> None:  # type: ignore[no-untyped-def]
    """The outcome docs/policy.md's bypass table gives for this VM's tier is what happened."""
    import bypass_cases as bc

    results, d = bypass_results
    want = bc.expected(case_id, TIER)
    got = bc.outcome(results[case_id], killed=False)
    assert got == want, f"{case_id}: the table says {want!r} for {TIER}, the kernel did {got!r}"
    if got == "blocked before" and bc.BY_ID[case_id].policy == "files" and \
            case_id not in ("rename_ancestor", "rename_ancestor_write_only"):
        # nothing happened to the protected files
        assert (d / "top" / "prot" / f"f_{case_id}").read_text() == "original\n"
        assert (d / "wtop" / "w" / f"f_{case_id}").read_text() == "original\n"


def test_reactive_tier_loads_on_this_kernel(ppin: Path) -> None:
    """The reactive program (path normalising, bpf_find_vma for mprotect, global functions)
    must pass this older verifier too, for kernels that refuse lsm/fmod_ret: forced here, and
    a relative unlink of a protected file is killed."""
    import bypass_cases as bc

    d = Path(f"/tmp/swatch-vm-reactive-{uuid.uuid4().hex[:8]}")
    case = bc.BY_ID["relative_cwd"]
    bc.make_tree(d, [case])
    target = subprocess.Popen([sys.executable, "-B", "-c",
                               "import os, sys\nsys.stdin.readline()\n"
                               f"os.chdir('{d}/top/prot')\nos.unlink('f_relative_cwd')"],
                              stdin=subprocess.PIPE, text=True)
    try:
        pol = d / "files.policy"
        pol.write_text(bc.policy_text("files", d) + "block connect\n")
        _, plans = enforcer.load_pinned(load_policy(str(pol)),
                                        Target(mode="pid", pid=target.pid,
                                               label=f"pid {target.pid}"), ppin,
                                        forced_tier="reactive")
        assert {p.tier for p in plans} == {"reactive"}, plans
        target.communicate("go\n", timeout=300)
        assert target.returncode == -9
        assert summary(ppin)["denials"]["unlink"] == 1
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
        subprocess.run(["rm", "-rf", str(d)])


PHASE_TARGET = r"""
import os, sys
print("ready", flush=True)
for line in sys.stdin:
    try:
        fd = os.open(line.strip(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        print(0, flush=True)
    except OSError as err:
        print(err.errno, flush=True)
"""


def test_phases_switch_blocked_before(ppin: Path, scratch_dir: Path) -> None:
    """read_only → write_logs → read_only on a loaded enforcer (policy/phases.py): each write
    fails with EPERM before it happens, or succeeds, as the phase of the moment says."""
    from syscall_watcher.policy.phases import switch_pinned

    logs, data = scratch_dir / "work" / "logs", scratch_dir / "work" / "data"
    logs.mkdir(parents=True)
    data.mkdir()
    pol = scratch_dir / "agent.policy"
    pol.write_text(f"block listen\nphase read_only\n  protect {logs.parent} write\n"
                   f"phase write_logs\n  protect {data} write\n  unblock listen\n")
    proc = subprocess.Popen([sys.executable, "-B", "-c", PHASE_TARGET], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        _, plans = enforcer.load_pinned(load_policy(str(pol)), Target(
            mode="pid", pid=proc.pid, label=f"pid {proc.pid}"), ppin, require_preventive=True)
        assert {p.op: p.tier for p in plans} == {"write": TIER, "listen": TIER}

        def write(path: Path) -> int:
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
            return int(proc.stdout.readline())

        assert write(logs / "a") == EPERM and not (logs / "a").exists()
        sw = switch_pinned(ppin, "write_logs")
        assert sw is not None and (sw.previous, sw.phase) == ("read_only", "write_logs")
        assert sw.added == {"write": [str(data)]}
        assert sw.removed == {"listen": ["everywhere"], "write": [str(logs.parent)]}
        assert write(logs / "b") == 0 and (logs / "b").read_bytes() == b"x"
        assert write(data / "c") == EPERM and not (data / "c").exists()
        sw = switch_pinned(ppin, "read_only")
        assert sw is not None and sw.seq == 2
        assert write(logs / "d") == EPERM and not (logs / "d").exists()
        assert proc.poll() is None  # blocked before: the target lives on
        got = [(d["op"], d["rule"], d["action"]) for d in denials(ppin)]
        assert got == [("write", str(logs.parent), "blocked"), ("write", str(data), "blocked"),
                       ("write", str(logs.parent), "blocked")], got
        assert summary(ppin)["phase"] == "read_only"
    finally:
        proc.kill()
        proc.wait()


def test_reactive_tier_kills_io_uring_submission(ppin: Path) -> None:
    """The reactive tier's io_uring program (io_uring_submit_sqe on 6.1, _req on 6.12) passes
    this kernel's verifier and kills an open for writing of a protected file through a ring."""
    d = Path(f"/tmp/swatch-vm-uring-{uuid.uuid4().hex[:8]}")
    (d / "prot").mkdir(parents=True)
    (d / "prot" / "f").write_text("original\n")
    target = subprocess.Popen(["/bin/sh", "-c", f"read x; exec {WORKLOADS / 'uring_ops'} one "
                               f"openw {d}/prot/f"], stdin=subprocess.PIPE, text=True)
    try:
        pol = d / "w.policy"
        pol.write_text(f"protect {d}/prot write\n")
        _, plans = enforcer.load_pinned(load_policy(str(pol)),
                                        Target(mode="pid", pid=target.pid,
                                               label=f"pid {target.pid}"), ppin,
                                        forced_tier="reactive")
        assert {p.tier for p in plans} == {"reactive"}, plans
        assert "io_uring submission of openat" in plans[0].describe()
        target.communicate("go\n", timeout=300)
        assert target.returncode == -9
        assert summary(ppin)["denials"]["write"] == 1
    finally:
        if target.poll() is None:
            target.kill()
            target.wait()
        subprocess.run(["rm", "-rf", str(d)])


def test_tracer_counts_io_uring_on_this_kernel(tmp_path: Path) -> None:
    """The tracer's io_uring programs load on this kernel (6.1: io_uring_submit_sqe; 6.12:
    _req) and count a liburing workload exactly: per opcode, and detect's per-process
    counters, which need the sqe's fd and CONNECT's address read right."""
    from syscall_watcher.detect.counters import read_procs
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.trace.tracer import LoadedTracer, uring_programs

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    (tmp_path / "in.txt").write_bytes(b"hello uring")
    # Started before the load: what the loading process forks afterwards is swatch's own
    # (excluded), so the workload waits at its gate instead.
    run = subprocess.Popen(["/bin/sh", "-c", f"read x; exec {WORKLOADS / 'uring_ops'} files "
                            f"{tmp_path} {srv.getsockname()[1]}"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tracer = LoadedTracer.load(Target(mode="comm", comm="uring_ops", label="comm uring_ops"))
    try:
        assert len(uring_programs()) == 2 and "sw_uring_complete" in tracer.links
        # the file-bytes counters work only under detect's lease: hold it (a deadline no
        # clock reaches) for the workload, as `swatch detect` does while it observes
        lease = libbpf.new("uint32_t *", libbpf.lib.SW_DETECT_LEASE)
        tracer.maps["detect"].update(lease, libbpf.new("uint64_t *", 2**64 - 1))
        _, err = run.communicate("go\n", timeout=300)
        tracer.maps["detect"].update(lease, libbpf.new("uint64_t *", 0))
        assert run.returncode == 0, err
        rows = {k: (v["count"], v["errors"], v["bytes_in"], v["bytes_out"])
                for k, v in tracer.uring_stats().items()}
        assert rows == {
            "io_uring:openat": (3, 1, 0, 0), "io_uring:read": (2, 1, 11, 0),
            "io_uring:write": (1, 0, 0, 10), "io_uring:close": (2, 0, 0, 0),
            "io_uring:statx": (1, 0, 0, 0), "io_uring:mkdirat": (1, 0, 0, 0),
            "io_uring:renameat": (1, 0, 0, 0), "io_uring:unlinkat": (1, 0, 0, 0),
            "io_uring:connect": (1, 0, 0, 0), "io_uring:send": (1, 0, 0, 5)}, rows
        c = tracer.counters()
        assert (c.uring_submitted, c.uring_completed) == (14, 14)
        (p,) = [p for p in read_procs(tracer.processes).values()
                if p.comm == "uring_ops"]
        assert p.values["file_bytes_out"] == 10 and p.values["connects_tcp"] == 1
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        tracer.close()
        srv.close()
