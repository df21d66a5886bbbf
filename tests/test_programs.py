"""`swatch status --programs`: each loaded program's cost from the kernel's own BPF statistics,
read while a real traced storm runs (no timed assertions: only what the counts must satisfy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from conftest import swatch, wait_for
from syscall_watcher.trace.tracer import uring_programs

STATS_SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_status_programs_counts_the_traced_storm(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    stats_before = STATS_SYSCTL.read_text().strip()
    # A getppid storm that never ends on its own, held at its gate until swatch traces it.
    storm = subprocess.Popen([workload("storm"), "getppid", str(10**15), "gate"],
                             stdin=subprocess.PIPE)
    try:
        swatch("load", "--pid", str(storm.pid), "--pin-dir", str(pin_dir), check=True)
        assert storm.stdin is not None
        storm.stdin.write(b"g")
        storm.stdin.flush()

        running = json.loads(swatch("status", "--json", "--programs", "--pin-dir",
                                    str(pin_dir), check=True).stdout)["program_stats"]
        assert running["stats_enabled"] == "only during this window"
        progs = {p["program"]: p for p in running["programs"]}
        # the io_uring programs are programs of their own: a syscall never runs them
        assert set(progs) == {"sw_sys_enter", "sw_sys_exit", "sw_exec", "sw_fork",
                              "sw_exit", *uring_programs()}
        counted = running["syscalls_counted"]
        for name in uring_programs():  # the storm has no ring: it costs them nothing
            assert progs[name]["runs"] < counted / 100, (progs[name], counted)
        assert counted > 0, "the storm ran through the window: swatch counted its calls"
        for name in ("sw_sys_enter", "sw_sys_exit"):
            p = progs[name]
            assert p["prog_id"] > 0 and p["runs"] > 0 and p["run_time_ns"] > 0, p
            assert p["ns_per_run"] == round(p["run_time_ns"] / p["runs"], 1)
            assert p["runs_per_sec"] > 0
            # Every call swatch counted ran sys_exit once (at most one run per CPU can be
            # still finishing when the window's last count is read).
            assert p["runs"] >= counted - os.cpu_count(), (p, counted)

        # The storm stopped: swatch counts nothing in the window, the programs still run for
        # the rest of the machine's syscalls.
        storm.send_signal(signal.SIGSTOP)
        assert wait_for(lambda: proc_state(storm.pid) == "T")
        idle = json.loads(swatch("status", "--json", "--programs", "--pin-dir",
                                 str(pin_dir), check=True).stdout)["program_stats"]
        assert idle["syscalls_counted"] == 0
        assert all(p["runs"] >= 0 for p in idle["programs"])

        human = swatch("status", "--programs", "--pin-dir", str(pin_dir), check=True).stdout
        assert "BPF run-time statistics (on for that window only)" in human
        for name in ("sw_sys_enter", "sw_sys_exit"):
            line = next(ln for ln in human.splitlines() if ln.split()[:1] == [name])
            assert "ns/run" in line and "runs/s" in line, line
    finally:
        storm.kill()
        storm.wait()
    # Only held while sampling: if no one else had them on, they are off again.
    if stats_before == "0":
        assert STATS_SYSCTL.read_text().strip() == "0"
