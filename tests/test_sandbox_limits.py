"""`swatch run --memory/--cpu/--pids/--oom-score-adj`: real cgroups on this host's layout.

Every limit is asserted from what the kernel shows: the cgroup files CMD finds through its own
/proc/self/cgroup, the errno fork gave the workload, the cgroup's OOM-kill counter (carried by
the oom_kill event). After every test no `swatch*` cgroup is left anywhere under /sys/fs/cgroup.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SWATCH, child_running, parse_record, swatch, wait_for

PY = sys.executable
CGROOT = Path("/sys/fs/cgroup")
RUNS_DIR = Path("/run/swatch/runs")

# CMD reports the limit files of the cgroups it is in, found from its own /proc/self/cgroup
# and /proc/self/mountinfo (independently of swatch's code), as one JSON line on stdout.
REPORT_OWN_LIMITS = r"""
import json, os
mounts = {}
for line in open("/proc/self/mountinfo"):
    left, _, right = line.partition(" - ")
    f, r = left.split(), right.split()
    if r[0] == "cgroup2":
        mounts["v2"] = f[4]
    elif r[0] == "cgroup":
        for opt in r[2].split(","):
            mounts[opt] = f[4]
files = {}
for line in open("/proc/self/cgroup"):
    hid, ctrls, path = line.rstrip("\n").split(":", 2)
    for ctrl in (["v2"] if hid == "0" else ctrls.split(",")):
        if ctrl not in mounts:
            continue
        d = mounts[ctrl] + path
        for name in ("memory.max", "memory.limit_in_bytes", "cpu.max", "cpu.cfs_quota_us",
                     "cpu.cfs_period_us", "pids.max"):
            if os.path.exists(os.path.join(d, name)) and name not in files:
                if path != "/" and os.path.basename(path).startswith("swatch-run-"):
                    files[name] = [d, open(os.path.join(d, name)).read().strip()]
files["oom_score_adj"] = [None, open("/proc/self/oom_score_adj").read().strip()]
print(json.dumps(files))
"""


def swatch_cgroups() -> list[str]:
    out = subprocess.run(["find", str(CGROOT), "-name", "swatch*"], capture_output=True,
                         text=True).stdout
    return out.split()


def our_records() -> list[Path]:
    return sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.is_dir() else []


@pytest.fixture(autouse=True)
def no_cgroups_left():  # type: ignore[no-untyped-def]
    """Nothing before, nothing after — and if a test failed midway, clear what it left."""
    assert swatch_cgroups() == [], "swatch cgroups exist before the test"
    yield
    left = swatch_cgroups()
    if left:
        subprocess.run([SWATCH, "cleanup"], capture_output=True, timeout=120)
    assert left == [], f"left behind: {left}"
    assert our_records() == [] or all(
        Path(f"/proc/{r.stem}").exists() for r in our_records())


def test_limits_are_written_read_back_and_hold_cmd() -> None:
    res = swatch("run", "--memory", "512M", "--cpu", "50%", "--pids", "200",
                 "--oom-score-adj", "900", "-e", "getppid", "--", PY, "-c", REPORT_OWN_LIMITS)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    # What CMD finds in its own cgroups (v1 here: memory, cpu, pids hierarchies; v2: one).
    mem = seen.get("memory.max") or seen["memory.limit_in_bytes"]
    assert mem[1] == "536870912"
    if "cpu.max" in seen:
        assert seen["cpu.max"][1] == "50000 100000"
    else:
        assert (seen["cpu.cfs_quota_us"][1], seen["cpu.cfs_period_us"][1]) == ("50000", "100000")
    assert seen["pids.max"][1] == "200"
    assert seen["oom_score_adj"][1] == "900"
    # The run printed the same values, read back, before CMD ran.
    start = next(ln for ln in res.stderr.splitlines() if ln.startswith("swatch: limits "))
    assert "536870912" in start and "pids.max 200" in start and "oom_score_adj 900" in start
    assert "50000 100000" in start
    # ... and removed every cgroup CMD was in.
    for _name, (d, _value) in seen.items():
        if d:
            assert not Path(d).exists(), d


def test_oom_kill_is_reported_as_such() -> None:
    hog = "b = []\nwhile True: b.append(b'\\1' * (1 << 20))"
    res = swatch("run", "--memory", "32M", "-e", "getppid", "--", PY, "-c", hog)
    assert res.returncode == 128 + signal.SIGKILL
    lines = res.stderr.splitlines()
    event = [ln for ln in lines if " OOM KILL memory limit 32M reached" in ln]
    assert len(event) == 1, res.stderr
    assert "killed by the OOM killer: memory limit 32M reached" in next(
        ln for ln in lines if ln.startswith("=== swatch — "))
    assert "swatch: OOM: memory limit 32M reached, 1 process killed by the OOM killer" in lines


def test_oom_kill_event_and_summary_in_json() -> None:
    hog = "b = []\nwhile True: b.append(b'\\1' * (1 << 20))"
    res = swatch("run", "--json", "--memory", "32M", "-e", "getppid", "--", PY, "-c", hog)
    assert res.returncode == 128 + signal.SIGKILL
    # every record (limits, oom_kill, summary) validated against records.schema.json
    records = [parse_record(ln) for ln in res.stderr.splitlines() if ln.startswith("{")]
    limits = next(r for r in records if r["type"] == "limits")
    assert int(limits["limits"].get("memory.max") or
               limits["limits"]["memory.limit_in_bytes"]) == 32 << 20
    oom = [r for r in records if r["type"] == "oom_kill"]
    # oom_kills is the cgroup's own counter (memory.events / memory.oom_control)
    assert len(oom) == 1 and oom[0]["oom_kills"] == 1 and oom[0]["memory_limit_bytes"] == 32 << 20
    summary = records[-1]
    assert summary["type"] == "summary" and summary["exit_code"] == -signal.SIGKILL
    assert summary["ended_by"] == "killed by the OOM killer: memory limit 32M reached"
    assert summary["sandbox"]["oom_kills"] == 1


FORK_UNTIL_REFUSED = r"""
import errno, os, sys
r, w = os.pipe()
kids = []
while True:
    try:
        pid = os.fork()
    except OSError as err:
        print(errno.errorcode[err.errno], len(kids))
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
    if len(kids) > 50:
        print("no limit", len(kids))
        break
os.close(w)
for k in kids:
    os.waitpid(k, 0)
"""


def test_pids_limit_makes_fork_fail_with_eagain() -> None:
    res = swatch("run", "--pids", "5", "-e", "getppid", "--", PY, "-c", FORK_UNTIL_REFUSED)
    assert res.returncode == 0, res.stderr
    # CMD is one of the 5: the 5th fork is refused by pids.max, with EAGAIN.
    assert res.stdout.split() == ["EAGAIN", "4"]


def test_children_cmd_left_behind_are_ended_and_the_cgroup_removed() -> None:
    res = swatch("run", "--pids", "20", "-e", "getppid", "--", "sh", "-c",
                 "sleep 1000 & echo $!")
    assert res.returncode == 0, res.stderr
    left = int(res.stdout)

    def gone() -> bool:
        try:  # ended: gone, or a zombie until init reaps it
            return Path(f"/proc/{left}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    assert gone()
    assert f"swatch: ended 1 process CMD left in its cgroup: {left}" in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_swatch_removes_the_cgroup(sig: int) -> None:
    proc = subprocess.Popen([SWATCH, "run", "--memory", "100M", "--pids", "20", "-e",
                             "getppid", "--", "sleep", "1000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        sleeper = child_running(proc.pid, "sleep", timeout=120)
        assert any(Path(d).name == f"swatch-run-{proc.pid}" for d in swatch_cgroups())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert not Path(f"/proc/{sleeper}/cmdline").exists() or Path(
        f"/proc/{sleeper}/cmdline").read_text() == ""
    assert swatch_cgroups() == []


def test_stale_cgroup_after_kill_9_is_found_and_removed() -> None:
    proc = subprocess.Popen([SWATCH, "run", "--pids", "20", "-e", "getppid", "--", "sleep",
                             "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sleeper = child_running(proc.pid, "sleep", timeout=120)
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait()
    stale = [d for d in swatch_cgroups() if Path(d).name == f"swatch-run-{proc.pid}"]
    assert stale
    try:
        # The next swatch command finds it; CMD still runs in it, so it says what ends it.
        res = swatch("version")
        assert res.returncode == 0
        assert (f"swatch: note: run cgroup {stale[0]} of a swatch that is gone (pid {proc.pid}) "
                f"still holds process {sleeper}; `swatch cleanup` ends it and removes the cgroup"
                ) in res.stderr, res.stderr
        assert Path(stale[0]).is_dir()
        res = swatch("cleanup")
        assert res.returncode == 0, res.stderr
        assert f"left by swatch pid {proc.pid} (ended {sleeper})" in res.stdout
        assert swatch_cgroups() == []
        assert not (RUNS_DIR / f"{proc.pid}.json").exists()
    finally:
        try:
            os.kill(sleeper, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_empty_stale_cgroup_is_removed_by_the_next_command() -> None:
    proc = subprocess.Popen([SWATCH, "run", "--pids", "20", "-e", "getppid", "--", "sleep",
                             "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sleeper = child_running(proc.pid, "sleep", timeout=120)
    proc.kill()
    proc.wait()
    os.kill(sleeper, signal.SIGKILL)  # the run's process is gone too: an empty stale cgroup
    stale = f"/sys/fs/cgroup/pids/swatch-run-{proc.pid}"
    assert wait_for(lambda: not any(Path(d).name == f"swatch-run-{proc.pid}" and
                                    (Path(d) / "cgroup.procs").read_text().strip()
                                    for d in swatch_cgroups()))
    res = swatch("version")
    assert res.returncode == 0
    assert "swatch: note: removed the run cgroup" in res.stderr and f"swatch pid {proc.pid}" \
        in res.stderr, res.stderr
    assert swatch_cgroups() == [], stale


@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "12XB"], "--memory 12XB: give a size like 512M"),
    (["--cpu", "0%"], f"--cpu 0%: choose 1% to {100 * (os.cpu_count() or 1)}%"),
    (["--cpu", f"{100 * (os.cpu_count() or 1) + 50}%"],  # 250% on this 2-CPU host
     f"choose 1% to {100 * (os.cpu_count() or 1)}% ({os.cpu_count()} CPU"),
    (["--oom-score-adj", "5000"], "--oom-score-adj 5000: choose -1000 to 1000"),
    pytest.param(["--oom-score-adj", "-1"], "needs CAP_SYS_RESOURCE", marks=pytest.mark.skipif(
        int(next(ln for ln in open("/proc/self/status") if ln.startswith("CapEff:")).split()[1],
            16) >> 24 & 1, reason="this process has CAP_SYS_RESOURCE: lowering is allowed")),
    (["--pids", "0"], "--pids 0: choose 1 to"),
])
def test_bad_limits_are_one_line_and_create_nothing(args: list[str], message: str) -> None:
    res = swatch("run", *args, "--", "true")
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("swatch: error: ") and message in lines[0], \
        res.stderr
    assert swatch_cgroups() == [] and our_records() == []
