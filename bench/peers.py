"""The peers: strace, perf trace, bpftrace, libbpf-tools' syscount.

For each: how it is found (find_tools: `make bench-deps` installs them, this installs nothing
and names what is missing), how it is started on a workload (launched or attached to a held
pid, and how it says it is attached), and how its result is read (events, drops, children).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import count_lines, log, read_text, tail, which
from bench.setups import BystanderTracer, Setup, Tools, Trial
from bench.workloads import Workload

NR_EXECVE_X86_64 = 59
# binary -> the Debian package that has it (tools/install-deps installs them: make bench-deps)
PEER_PACKAGES = {"strace": "strace", "perf": "linux-perf", "bpftrace": "bpftrace",
                 "syscount": "libbpf-tools", "stdbuf": "coreutils"}


def _working_perf(found: str | None, notes: dict[str, str]) -> str | None:
    """Debian's /usr/bin/perf may be a wrapper that refuses an unknown kernel version; then a
    versioned binary (perf_6.1, ...) is used directly."""
    cands = [found] if found else []
    cands += sorted(str(p) for p in Path("/usr/bin").glob("perf_*") if os.access(p, os.X_OK))
    for c in cands:
        r = subprocess.run([c, "trace", "-o", "/dev/null", "--", "/bin/true"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            return c
        notes["perf"] = notes.get("perf", "") + f"{c}: rc={r.returncode} {tail(r.stderr, 300)}; "
    return None


def find_tools(swatch: str) -> tuple[Tools, dict[str, str], dict[str, str]]:
    """(tools, notes, versions). Each missing peer is said once, on its own line."""
    bins: dict[str, str | None] = {b: which(b) for b in PEER_PACKAGES}
    notes: dict[str, str] = {}
    found_perf = bins["perf"]
    bins["perf"] = _working_perf(found_perf, notes)
    missing: dict[str, str] = {}
    for b, path in bins.items():
        if path:
            continue
        if b == "perf" and found_perf:
            why = f"skipped: perf is installed but `perf trace` fails here ({notes['perf']})"
        else:
            why = (f"skipped: {b} is not installed (Debian package {PEER_PACKAGES[b]}; "
                   "`sudo make bench-deps` installs the peers)")
        missing[b] = why
        log(f"peers: {b} {why}")
    sw = Path(swatch)
    bins["swatch"] = str(sw) if sw.exists() and os.access(sw, os.X_OK) else None
    if not bins["swatch"]:
        missing["swatch"] = f"skipped: no swatch CLI at {sw} (`make venv` builds it)"
        log(f"swatch: {missing['swatch']}")
    if missing:
        notes["missing"] = "; ".join(f"{b}: {w}" for b, w in missing.items())
    versions: dict[str, str] = {}
    for b, args in (("strace", ["-V"]), ("perf", ["--version"]), ("bpftrace", ["--version"])):
        path = bins.get(b)
        if path:
            r = subprocess.run([path, *args], capture_output=True, text=True)
            text = (r.stdout or r.stderr).strip()
            versions[b] = text.splitlines()[0] if text else "?"
    dpkg_query = which("dpkg-query")
    if bins.get("syscount") and dpkg_query:
        r = subprocess.run([dpkg_query, "-W", "-f=${Version}", "libbpf-tools"],
                           capture_output=True, text=True)
        versions["libbpf-tools"] = r.stdout.strip() or "?"
    return Tools(bins, missing), notes, versions


# ------------------------------------------------------------------------ strace, perf trace
class StraceF(Setup):
    name, does, slow, needs = "strace -f", "stream (ptrace)", True, ("strace",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["strace"], "-f", "-o", "/dev/null", *cmd]


class StraceFC(Setup):
    name, does, slow, needs = "strace -fc", "stats (ptrace)", True, ("strace",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["strace"], "-fc", "-o", t.tmp / "strace-c.txt", *cmd]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        # strace -c's table: "% time  seconds  usecs/call  calls  [errors]  syscall"
        m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?execve\s*$",
                      read_text(t.tmp / "strace-c.txt"), re.M)
        if m and t.wl and t.wl.name == "forkexec":
            return {"children_seen": int(m.group(1)) - 1}  # minus the workload's own execve
        return {}


class PerfTrace(Setup):
    name, does, slow, needs = "perf trace", "stream (perf buffer)", True, ("perf",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["perf"], "trace", "-o", "/dev/null", "--", *cmd]


# ---------------------------------------------------------------------------------- bpftrace
def _bt_filter(wl: Workload | None) -> str:
    if wl is not None and wl.name == "forkexec":
        return "pid == $1 || curtask->real_parent->tgid == $1"
    return "pid == $1"


def _bt_lost(*texts: str) -> int:
    return sum(int(x) for x in re.findall(r"Lost (\d+) events", "".join(texts)))


class BpftraceCount(Setup):
    """Counts into a map, attached to the held pid; BEGIN touches a file to say it is ready."""

    name, kind, does, needs = "bpftrace count", "attach", "stats (map)", ("bpftrace",)
    exit_probe = False

    def script(self, wl: Workload | None, t: Trial) -> str:
        s = f'BEGIN {{ system("touch {t.ready}"); }}\n'
        s += (f"tracepoint:raw_syscalls:sys_enter /{_bt_filter(wl)}/ "
              "{ @calls[args->id] = count(); }\n")
        if self.exit_probe:
            s += (f"tracepoint:raw_syscalls:sys_exit /{_bt_filter(wl)}/ "
                  "{ @rets[args->id] = count(); }\n")
        if wl is not None and wl.name == "forkexec":
            s += ("tracepoint:sched:sched_process_exec /curtask->real_parent->tgid == $1/ "
                  "{ @execs = count(); }\n")
        return s

    def attach_argv(self, pid: int, t: Trial) -> list[Any]:
        return [self.tools["bpftrace"], "--unsafe", "-e", self.script(t.wl, t), str(pid)]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        m = re.search(r"^@execs: (\d+)", read_text(t.out), re.M)
        return {"children_seen": int(m.group(1))} if m else {}


class BpftracePrintf(Setup):
    name, kind, does, slow, needs = ("bpftrace printf", "attach", "stream (perf buffer)", True,
                                     ("bpftrace",))

    def attach_argv(self, pid: int, t: Trial) -> list[Any]:
        s = (f'BEGIN {{ system("touch {t.ready}"); }}\n'
             f"tracepoint:raw_syscalls:sys_enter /{_bt_filter(t.wl)}/ "
             '{ printf("%d %d\\n", pid, args->id); }\n')
        return [self.tools["bpftrace"], "--unsafe", "-o", t.tmp / "bt.txt", "-e", s, str(pid)]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        text = read_text(t.tmp / "bt.txt")
        ev = kids = 0
        for line in text.splitlines():
            a = line.split()
            if len(a) == 2 and a[0].isdigit() and a[1].isdigit():
                ev += 1
                if int(a[1]) == NR_EXECVE_X86_64 and int(a[0]) != wl_pid:
                    kids += 1
        out: dict[str, Any] = {"delivered": ev,
                               "dropped": _bt_lost(text, read_text(t.out), read_text(t.err))}
        if t.wl and t.wl.name == "forkexec":
            out["children_seen"] = kids
        return out


# -------------------------------------------------------------------------- libbpf-tools
class Syscount(Setup):
    name, kind, does, needs = ("syscount -p", "attach", "stats (map, enter+exit)",
                               ("syscount", "stdbuf"))
    ready_text = "Tracing syscalls"

    def attach_argv(self, pid: int, t: Trial) -> list[Any]:
        # stdbuf: syscount printf()s its "Tracing ..." line after attaching; line-buffer it
        return [self.tools["stdbuf"], "-oL", self.tools["syscount"], "-p", str(pid)]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        if t.wl and t.wl.name == "forkexec":
            return {"note": "-p traces the parent only; children not counted"}
        return {}


class SyscountL(Syscount):
    """`syscount -p -L`: with latency, as swatch's default measures it (its sys_enter program
    then runs too, storing a timestamp per thread in a hash; sys_exit adds the time)."""

    name, does = "syscount -p -L", "stats + latency (map, enter+exit)"

    def attach_argv(self, pid: int, t: Trial) -> list[Any]:
        return [*super().attach_argv(pid, t), "-L"]


# ------------------------------------------------------------------- streaming to a file
class StreamBpftrace(Setup):
    """bpftrace printf per event, launched with -c (so wall time covers start-up and drain)."""

    name, does, needs = "bpftrace printf -c", "stream", ("bpftrace",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        s = ("tracepoint:raw_syscalls:sys_enter /pid == cpid/ "
             '{ printf("%d %d\\n", pid, args->id); }')
        return [self.tools["bpftrace"], "-o", t.tmp / "bt.txt", "-e", s, "-c", " ".join(cmd)]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        text = read_text(t.tmp / "bt.txt")
        ev = sum(1 for line in text.splitlines() if re.fullmatch(r"\d+ \d+", line))
        return {"delivered": ev, "dropped": _bt_lost(text, read_text(t.err), read_text(t.out))}


class StreamStrace(Setup):
    name, does, needs = "strace -f -o FILE", "stream", ("strace",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["strace"], "-f", "-o", t.tmp / "strace.txt", *cmd]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        return {"delivered": count_lines(t.tmp / "strace.txt"), "dropped": 0,
                "note": "ptrace stops the tracee: nothing can be dropped"}


class StreamPerf(Setup):
    name, does, needs = "perf trace -o FILE", "stream", ("perf",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["perf"], "trace", "-o", t.tmp / "perf.txt", "--", *cmd]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        text = read_text(t.tmp / "perf.txt")
        lost = sum(int(x) for x in re.findall(r"LOST (\d+) events", text + read_text(t.err)))
        ev = sum(1 for line in text.splitlines() if line.strip() and "LOST" not in line)
        return {"delivered": ev, "dropped": lost}


# -------------------------------------------------------------------------------- bystander
class BSyscount(BystanderTracer):
    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.needs = ("syscount", "stdbuf")

    def start(self, target_pid: int, tmp: Path) -> str | None:
        argv = [self.tools["stdbuf"], "-oL", self.tools["syscount"], "-p", target_pid,
                *(["-L"] if self.name.startswith("syscount -p -L") else [])]
        return self._attached_proc(argv, tmp, lambda out: "Tracing syscalls" in read_text(out))

    def stop(self) -> dict[str, Any]:
        return self._stop_proc()


class BBpftrace(BystanderTracer):
    def __init__(self, *a: Any, exit_probe: bool) -> None:
        super().__init__(*a)
        self.needs = ("bpftrace",)
        self.exit_probe = exit_probe

    def start(self, target_pid: int, tmp: Path) -> str | None:
        ready = tmp / "ready"
        s = f'BEGIN {{ system("touch {ready}"); }}\n'
        s += "tracepoint:raw_syscalls:sys_enter /pid == $1/ { @calls[args->id] = count(); }\n"
        if self.exit_probe:
            s += "tracepoint:raw_syscalls:sys_exit /pid == $1/ { @rets[args->id] = count(); }\n"
        return self._attached_proc([self.tools["bpftrace"], "--unsafe", "-e", s, target_pid],
                                   tmp, lambda _out: ready.exists())

    def stop(self) -> dict[str, Any]:
        return self._stop_proc()
