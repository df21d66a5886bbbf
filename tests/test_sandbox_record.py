"""`swatch record` and `swatch run --seccomp`: OCI seccomp profiles from observed runs, applied
by real libseccomp (swatch run) and by the real Docker daemon (runc), asserted from the errno
the workload saw; the draft policy parsed by the real policy parser and loaded audit-only."""

from __future__ import annotations

import errno
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import parse_record, swatch
from test_containers import IMAGE, docker, docker_env, make_container  # noqa: F401 (fixtures)

from syscall_watcher.policy.language import load_policy
from syscall_watcher.sandbox import oci

PY = sys.executable
BUSYBOX = "/bin/busybox"

# Each argument is one attempt; the workload prints "<what> ok" or "<what> <ERRNO name>".
ATTEMPTS = r"""
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def check(r):
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r
def raw_clone(flags):  # x86_64 clone(flags, stack, ptid, ctid, tls): a fork, by hand
    pid = check(libc.syscall(56, ctypes.c_ulong(flags), 0, 0, 0, 0))
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
for what in sys.argv[1:]:
    if what == "inet":
        attempt(what, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    elif what == "inet6":
        attempt(what, lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
    elif what == "fork":
        attempt(what, lambda: raw_clone(17))  # SIGCHLD: what fork() asks for
    elif what == "fork-newuts":
        attempt(what, lambda: raw_clone(17 | 0x04000000))  # + CLONE_NEWUTS: never seen
    elif what == "mkdir":
        attempt(what, lambda: os.mkdir("/nonexistent-swatch-dir/x"))
    elif what == "clone3":
        attempt(what, lambda: check(libc.syscall(435, 0, 0)))
    elif what == "syslog":  # SYSLOG_ACTION_SIZE_BUFFER: reads a number, changes nothing
        attempt(what, lambda: check(libc.syscall(103, 10, 0, 0)))
    elif what == "personality-query":
        attempt(what, lambda: check(libc.syscall(135, ctypes.c_ulong(0xffffffff))))
    elif what == "personality-set":
        attempt(what, lambda: check(libc.syscall(135, ctypes.c_ulong(0x0008))))
"""


def results(stdout: str) -> dict[str, str]:
    return dict(line.split() for line in stdout.splitlines())


def names_of(profile: dict) -> set[str]:  # type: ignore[type-arg]
    return {n for rule in profile["syscalls"] for n in rule["names"]}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One recording with --args of a workload that makes an AF_INET socket and forks."""
    d = tmp_path_factory.mktemp("record")
    script = d / "attempts.py"
    script.write_text(ATTEMPTS)
    res = swatch("record", "--args", "-o", str(d / "p.json"), "--", PY, str(script), "inet",
                 "fork")
    assert res.returncode == 0, res.stderr
    assert results(res.stdout) == {"inet": "ok", "fork": "ok"}
    return d, res.stderr


def test_record_writes_a_stable_oci_profile_from_the_kernel_counts(
        recorded: tuple[Path, str]) -> None:
    d, stderr = recorded
    text = (d / "p.json").read_text()
    profile = json.loads(text)
    # the layout that diffs well: sorted keys, two-space indent, one name a line, final newline
    assert text == json.dumps(profile, indent=2, sort_keys=True) + "\n"
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == errno.EPERM
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    first = profile["syscalls"][0]
    assert first["action"] == "SCMP_ACT_ALLOW" and "args" not in first
    assert first["names"] == sorted(first["names"])
    names = names_of(profile)
    # what the workload did (the Python startup reads and maps files; the attempts), what the
    # run itself did (exec'd CMD), and the two calls that never return, so never counted
    assert {"execve", "read", "mmap", "openat", "socket", "clone", "wait4", "exit_group",
            "exit"} <= names
    assert not {"mkdir", "unshare", "reboot", "ptrace"} & names
    # what runc needs before the entrypoint, added and said
    assert set(oci.runtime_syscalls()) <= names
    assert "the container runtime needs before the entrypoint" in stderr
    # the whole file is what swatch run --seccomp and Docker read
    assert oci.parse_profile(text, "p.json").default_errno == errno.EPERM


def test_args_narrow_socket_families_and_clone_flags_to_those_seen(
        recorded: tuple[Path, str]) -> None:
    d, stderr = recorded
    profile = json.loads((d / "p.json").read_text())
    narrowed = {r["names"][0]: r["args"] for r in profile["syscalls"][1:]}
    assert narrowed == {
        "socket": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 2, "valueTwo": 0}],  # AF_INET
        # every clone the run made (fork: SIGCHLD, and Python's own, if any) within the mask
        "clone": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ",
                   "value": narrowed["clone"][0]["value"], "valueTwo": 0}],
    }
    allowed_flags = ~narrowed["clone"][0]["value"] & (2**64 - 1)
    assert allowed_flags & 17 == 17 and not allowed_flags & 0x04000000
    assert "socket" not in profile["syscalls"][0]["names"]
    assert "swatch: socket narrowed to the address family seen: 2" in stderr


def test_run_seccomp_applies_the_recorded_profile(recorded: tuple[Path, str]) -> None:
    """The recorded workload runs whole under its profile; one call outside it gets EPERM,
    and each denial is a DENIED record (tier seccomp) that validates against the schema."""
    d, _ = recorded
    res = swatch("run", "--json", "--seccomp", str(d / "p.json"), "-e", "getppid", "--", PY,
                 str(d / "attempts.py"), "inet", "fork", "inet6", "fork-newuts", "mkdir")
    assert res.returncode == 0, res.stderr
    assert results(res.stdout) == {"inet": "ok", "fork": "ok", "inet6": "EPERM",
                                   "fork-newuts": "EPERM", "mkdir": "EPERM"}
    records = [parse_record(ln) for ln in res.stderr.splitlines() if ln.startswith("{")]
    denied = [r for r in records if r["type"] == "denied"]
    assert [(r["syscall"], r["action"], r["errno"], r["profile"]) for r in denied] == [
        ("socket", "blocked", "EPERM", "p.json"), ("clone", "blocked", "EPERM", "p.json"),
        ("mkdir", "blocked", "EPERM", "p.json")]
    assert records[-1]["denied"] == {"seccomp": {"clone": 1, "mkdir": 1, "socket": 1}}


def test_the_draft_policy_parses_and_loads_audit_only(recorded: tuple[Path, str]) -> None:
    d, _ = recorded
    draft = d / "p.policy"
    pol = load_policy(str(draft))  # the real parser
    # the workload made sockets and forked, and exec'd nothing after its own start
    assert {"connect", "bind", "listen", "exec"} <= pol.blocks
    assert not {"socket", "fork"} & pol.blocks
    assert "/etc" in {r.path for r in pol.protects if "write" in r.ops}
    assert f"# programs exec'd: {os.path.realpath(PY)}" in draft.read_text() or \
        f"# programs exec'd: {PY}" in draft.read_text()
    target = subprocess.Popen(["sleep", "1000"])
    pin = f"/sys/fs/bpf/swatch-test-record-{secrets.token_hex(4)}"
    try:
        res = swatch("policy", "load", "--audit-only", "--pid", str(target.pid), "--policy",
                     str(draft), "--pin-dir", pin)
        assert res.returncode == 0, res.stderr
    finally:
        swatch("policy", "unload", "--pin-dir", pin)
        target.kill()
        target.wait()
    assert not os.path.exists(pin)


# A profile in the shape of Docker's default (moby profiles/seccomp/default.json), written here:
# archMap, names lists, i386-only and ARM-only names, rules held by includes/excludes on
# capabilities and architectures, argument conditions, an errnoRet of ENOSYS.
def docker_like_profile() -> dict:  # type: ignore[type-arg]
    from syscall_watcher.kernel import syscalls

    refused = {"mkdir", "clone3", "syslog", "personality", "unshare", "reboot", "kexec_load"}
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": sorted(set(syscalls.table()) - refused) + ["_llseek", "chown32"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["arm_fadvise64_64", "unshare"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["arm", "arm64"]}},
            {"names": ["syslog"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYSLOG"]}, "comment": "root has it: included"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_CHECKPOINT_RESTORE", "CAP_SYS_NICE_NOT_A_CAP"]}},
        ],
    }


def test_run_seccomp_applies_a_docker_shaped_profile(tmp_path: Path) -> None:
    prof = tmp_path / "docker-like.json"
    prof.write_text(json.dumps(docker_like_profile()))
    script = tmp_path / "attempts.py"
    script.write_text(ATTEMPTS)
    res = swatch("run", "--seccomp", str(prof), "-e", "getppid", "--", PY, str(script), "inet",
                 "inet6", "fork", "mkdir", "clone3", "syslog", "personality-query",
                 "personality-set")
    assert res.returncode == 0, res.stderr
    assert results(res.stdout) == {
        "inet": "ok", "inet6": "ok", "fork": "ok",
        "mkdir": "EPERM",  # not listed: the default action and errno
        "clone3": "ENOSYS",  # its own errnoRet (the excludes name a capability nobody has)
        "syslog": "ok",  # included: root holds CAP_SYSLOG
        "personality-query": "ok", "personality-set": "EPERM",  # the argument condition
    }
    denied = [ln.split(" DENIED ")[1] for ln in res.stderr.splitlines()
              if " DENIED " in ln and not ln.startswith("swatch:")]
    assert denied == ["mkdir (profile docker-like.json, tier seccomp: EPERM)",
                      "clone3 (profile docker-like.json, tier seccomp: ENOSYS)",
                      "personality (profile docker-like.json, tier seccomp: EPERM)"]
    assert "default SCMP_ACT_ERRNO, 4 rules (1 left out by includes/excludes)" in res.stderr


GOOD = '{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], ' \
    '"action": "SCMP_ACT_ALLOW"}]}'


@pytest.mark.parametrize(("text", "message"), [
    ('{\n  "defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [\n}\n',
     "{f}:4:1: not valid JSON: Expecting value"),
    ('["SCMP_ACT_ERRNO"]', ("{f}: not an OCI seccomp profile: the top level: a list, expected "
     "an object")),
    ('{"syscalls": []}', '{f}: not an OCI seccomp profile: "defaultAction": missing'),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "sycalls": []}',
     ('{f}: not an OCI seccomp profile: "sycalls": unknown key (did you mean syscalls?); '
     "expected archMap, architectures, defaultAction, defaultErrnoRet, flags, "
     "listenerMetadata, listenerPath, syscalls")),
    (GOOD.replace("SCMP_ACT_ALLOW", "ALLOW"), ('{f}: not an OCI seccomp profile: '
     'syscalls[0].action: "ALLOW" is not one of SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, '
     "SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE, "
     "SCMP_ACT_LOG, SCMP_ACT_NOTIFY")),
    (GOOD.replace('["read"]', '["read", "opnat"]'),
     ('{f}: syscalls[0].names[1]: unknown syscall "opnat" (did you mean openat, openat2, '
     "open?)")),
    (GOOD.replace("{", '{"architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ', 1),
     ("{f}: architectures SCMP_ARCH_AARCH64, SCMP_ARCH_ARM do not include this machine's "
     "SCMP_ARCH_X86_64 (x86_64)")),
])
def test_bad_profiles_are_one_line_and_run_nothing(tmp_path: Path, text: str,
                                                   message: str) -> None:
    prof = tmp_path / "bad.json"
    prof.write_text(text)
    marker = tmp_path / "ran"
    res = swatch("run", "--seccomp", str(prof), "--", "touch", str(marker))
    assert res.returncode == 1
    assert res.stderr.splitlines() == [f"swatch: error: {message.format(f=prof)}"]
    assert not marker.exists()


def test_record_to_a_missing_directory_is_one_line_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = tmp_path / "missing" / "p.json"
    res = swatch("record", "-o", str(out), "--", "touch", str(marker))
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"swatch: error: cannot write {out}: no directory {tmp_path / 'missing'}"]
    assert not marker.exists() and not out.parent.exists()


# ------------------------------------------------------------------ the real Docker daemon

WORKLOAD = "echo hello > {d}/f; cat {d}/f"


def test_docker_runs_the_recorded_workload_and_refuses_one_call_more(
        tmp_path: Path, docker_env: None) -> None:  # noqa: F811
    """Recorded on the host with the same static busybox the image holds; Docker (runc)
    applies the profile; the container's one call outside it gets EPERM, as its error says."""
    with_runtime, without = tmp_path / "p.json", tmp_path / "bare.json"
    for out, extra in ((with_runtime, []), (without, ["--no-runtime-syscalls"])):
        res = swatch("record", *extra, "-o", str(out), "--", BUSYBOX, "sh", "-c",
                     WORKLOAD.format(d=tmp_path))
        assert res.returncode == 0 and res.stdout == "hello\n", res.stderr
    names = names_of(json.loads(with_runtime.read_text()))
    assert "mkdir" not in names

    def run(profile: Path, script: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run(["docker", "run", "--rm", "--security-opt",
                               f"seccomp={profile}", IMAGE, BUSYBOX, "sh", "-c", script],
                              capture_output=True, text=True, timeout=120, check=False)

    done = run(with_runtime, WORKLOAD.format(d="/tmp"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello\n", "")
    # one syscall more (mkdir): the errno the workload saw is EPERM, in busybox's own words
    done = run(with_runtime, "echo hello > /tmp/f; mkdir /tmp/d")
    assert done.returncode == 1
    assert done.stderr == f"mkdir: can't create directory '/tmp/d': {os.strerror(errno.EPERM)}\n"
    # without what runc needs between installing the filter and exec'ing the entrypoint,
    # the container cannot start at all: runc's own calls get EPERM, which runc reports
    # ("operation not permitted") or which kills its Go runtime first (a failed futex wake),
    # depending on which of its calls comes first
    done = run(without, WORKLOAD.format(d="/tmp"))
    assert done.returncode == 125 and done.stdout == "", done.stderr
    assert ("operation not permitted" in done.stderr
            or "futexwakeup" in done.stderr and "returned -1" in done.stderr), done.stderr


def test_record_a_running_container(tmp_path: Path, make_container) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    name = f"swatch-test-record-{secrets.token_hex(4)}"
    make_container("sh", "-c", "while true; do echo x > /tmp/f; usleep 20000; done", name=name)
    out = tmp_path / "c.json"
    try:
        res = swatch("record", "--container", name, "--duration", "1", "-o", str(out))
    finally:  # its loop never ends: not left to load the machine until the session ends
        docker("rm", "-f", name, check=False)
    assert res.returncode == 0, res.stderr
    names = names_of(json.loads(out.read_text()))
    # the loop: sh opens /tmp/f for the redirection, writes, and forks/execs usleep
    assert {"openat", "write", "wait4", "execve"} <= names
    draft = load_policy(str(tmp_path / "c.policy"))
    assert "connect" in draft.blocks
