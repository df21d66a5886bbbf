"""Policy phases on the host kernel (cgroup-BPF + reactive tiers): `swatch policy phase NAME`
switches the loaded enforcer's rules with one map update. A real target (a process tree) asks
a child to write a file after each switch; the kernel's answer (the child exits, or dies by
SIGKILL at the write's sys_enter) and the denial records say which phase held. The BPF LSM
and fmod_ret tiers run the same sequence in the VMs (tests/test_policy_vm_inner.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import check_document, new_pin_dir, parse_record, swatch, wait_for

PY = sys.executable

# The target: for each path read from stdin, a child opens it for writing (O_CREAT|O_TRUNC)
# and writes b"x"; the target prints the child's wait status. The target itself writes only to
# its stdout pipe, which no rule protects.
TARGET = """
import os, sys
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(line.strip(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b"x")
            os._exit(0)
        except OSError as err:
            os._exit(err.errno)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def phased_policy(tmp: Path) -> tuple[Path, Path, Path]:
    """read_only: nothing under tmp/work may be written; write_logs: only tmp/work/logs may."""
    work = tmp / "work"
    (work / "logs").mkdir(parents=True)
    (work / "data").mkdir()
    pol = tmp / "agent.policy"
    pol.write_text(f"# phases of an agent\nblock listen\n"
                   f"phase read_only\n  protect {work} write\n"
                   f"phase write_logs\n  protect {work / 'data'} write\n  unblock listen\n")
    return pol, work / "logs", work / "data"


class Target:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([PY, "-B", "-c", TARGET], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def write(self, path: Path) -> int:
        """The wait status of a child writing ``path``."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(autouse=True)
def pinned_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan from the cgroup tier down (the host refuses lsm/fmod_ret; no probing)."""
    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")


@pytest.fixture
def ppin():  # type: ignore[no-untyped-def]
    d = new_pin_dir("policy")
    yield d
    swatch("policy-unload", "--pin-dir", str(d))
    assert not d.exists(), f"{d} left behind"


def killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def phase(ppin: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return swatch("policy", "phase", name, "--pin-dir", str(ppin), *extra)


def test_switch_read_only_write_logs_and_back(ppin: Path, tmp_path: Path) -> None:
    pol, logs, data = phased_policy(tmp_path)
    target = Target()
    out = tmp_path / "watch.jsonl"
    watcher = None
    try:
        r = swatch("policy", "load", "--pid", str(target.proc.pid), "--policy", str(pol),
                   "--pin-dir", str(ppin))
        assert r.returncode == 0, r.stderr
        assert "phases: read_only, write_logs; now in read_only" in r.stdout
        watcher = subprocess.Popen(
            [str(Path(PY).parent / "swatch"), "watch", "--json", "--pin-dir",
             str(new_pin_dir("none")), "--policy-pin-dir", str(ppin), "--output", str(out),
             "--duration", "60"], stderr=subprocess.PIPE, text=True)

        # read_only: a write anywhere under work/ is denied (reactive: SIGKILL at sys_enter)
        assert killed(target.write(logs / "a"))
        s = check_document("policy_summary_doc", json.loads(
            swatch("policy", "summary", "--json", "--pin-dir", str(ppin)).stdout))
        assert (s["phase"], s["phases"]) == ("read_only", ["read_only", "write_logs"])

        r = phase(ppin, "write_logs")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            f"swatch: policy agent: phase read_only -> write_logs",
            "  listen: no longer denied everywhere",
            f"  write: no longer denied {logs.parent}; now denied {data}"]
        # write_logs: the logs directory may be written, the data directory may not
        assert target.write(logs / "b") == 0
        assert (logs / "b").read_bytes() == b"x"
        assert killed(target.write(data / "c"))

        r = phase(ppin, "read_only", "--json")
        assert r.returncode == 0, r.stderr
        rec = parse_record(r.stdout)
        assert (rec["previous"], rec["phase"], rec["seq"]) == ("write_logs", "read_only", 2)
        assert rec["added"] == {"listen": ["everywhere"], "write": [str(logs.parent)]}
        assert rec["removed"] == {"write": [str(data)]}
        # read_only again: logs/ is denied once more
        assert killed(target.write(logs / "d"))
        assert not (logs / "d").exists() or (logs / "d").read_bytes() == b""

        def records() -> list[dict]:  # type: ignore[type-arg]
            text = out.read_text() if out.exists() else ""
            return [parse_record(line) for line in text.splitlines() if line]

        # every denial reached the stream, with the path rule of the phase that held it
        wait_for(lambda: len([e for e in records() if e["type"] == "denied"]) >= 3, 10)
        denied = [e for e in records() if e["type"] == "denied"]
        assert [(e["op"], e["target"], e["rule"]) for e in denied] == [
            ("write", str(logs / "a"), str(logs.parent)),
            ("write", str(data / "c"), str(data)),
            ("write", str(logs / "d"), str(logs.parent))]
        # the switches too, in order (watch polls the phase map: both seen one by one here,
        # since each switch waited for a denial record that came after it)
        wait_for(lambda: len([e for e in records() if e["type"] == "phase"]) >= 2, 10)
        kinds = [(e["type"], e.get("phase")) for e in records()]
        assert kinds == [("denied", None), ("phase", "write_logs"), ("denied", None),
                         ("phase", "read_only"), ("denied", None)]
    finally:
        if watcher is not None:
            watcher.terminate()
            watcher.wait(timeout=15)
        target.close()


def test_bad_phase_input_changes_nothing(ppin: Path, tmp_path: Path) -> None:
    pol, logs, _ = phased_policy(tmp_path)
    # no policy loaded
    r = phase(ppin, "write_logs")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("swatch: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert not ppin.exists()
    # --phase at load: an unknown one is refused before anything loads
    target = Target()
    try:
        r = swatch("policy", "load", "--pid", str(target.proc.pid), "--policy", str(pol),
                   "--pin-dir", str(ppin), "--phase", "write_log")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "no phase 'write_log' (did you mean 'write_logs'?); its phases: read_only, " \
               "write_logs" in r.stderr
        assert not ppin.exists()
        # loaded in write_logs: logs/ may be written
        r = swatch("policy", "load", "--pid", str(target.proc.pid), "--policy", str(pol),
                   "--pin-dir", str(ppin), "--phase", "write_logs")
        assert r.returncode == 0, r.stderr
        assert target.write(logs / "a") == 0
        # an unknown phase: one line naming the defined ones; the phase stays
        r = phase(ppin, "network")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "has no phase 'network'; its phases: read_only, write_logs; nothing changed" \
            in r.stderr
        assert target.write(logs / "b") == 0
        r = phase(ppin, "write_logs")
        assert (r.returncode, r.stdout) == (0, "swatch: already in phase write_logs; "
                                               "nothing changed\n")
    finally:
        target.close()
    swatch("policy-unload", "--pin-dir", str(ppin))
    # a policy without phases
    target = Target()
    try:
        r = swatch("policy", "load", "--pid", str(target.proc.pid), "--policy", "no-exec",
                   "--pin-dir", str(ppin))
        assert r.returncode == 0, r.stderr
        r = phase(ppin, "read_only")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "policy no-exec defines no phases; nothing changed" in r.stderr
        s = json.loads(swatch("policy", "summary", "--json", "--pin-dir", str(ppin)).stdout)
        assert (s["phase"], s["phases"]) == (None, [])
    finally:
        target.close()


def test_run_policy_phase(tmp_path: Path) -> None:
    """`swatch run --policy P --phase NAME`: that phase's rules, with Landlock, for the run."""
    pol, logs, data = phased_policy(tmp_path)
    out = tmp_path / "out"  # a sibling of work/: creating in an ancestor of a protected path
    out.mkdir()             # is denied too under Landlock (README, "Sandboxed runs")
    script = f"echo x > {logs}/f; echo $? > {out}/rc1; echo y > {data}/f; echo $? > {out}/rc2"
    r = swatch("run", "--policy", str(pol), "--phase", "write_logs", "-c", "--",
               "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert "swatch: policy agent (phase write_logs) applied to /bin/sh before exec:" in r.stderr
    assert (logs / "f").read_text() == "x\n" and not (data / "f").exists()
    assert ((out / "rc1").read_text(), (out / "rc2").read_text()) == ("0\n", "2\n")
    (logs / "f").unlink()
    r = swatch("run", "--policy", str(pol), "-c", "--", "/bin/sh", "-c", script)  # read_only
    assert "swatch: policy agent (phase read_only) applied" in r.stderr
    assert not (logs / "f").exists() and not (data / "f").exists()
    assert ((out / "rc1").read_text(), (out / "rc2").read_text()) == ("2\n", "2\n")
    for args, msg in ((["--policy", str(pol), "--phase", "nope"],
                       "has no phase 'nope'; its phases: read_only, write_logs"),
                      (["--policy", "no-exec", "--phase", "x"], "defines no phases"),
                      (["--phase", "x"], "--phase goes with --policy")):
        r = swatch("run", *args, "--", "/bin/true")
        assert r.returncode != 0 and msg in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("swatch: error: "), \
            r.stderr
