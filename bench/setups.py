"""What runs around a workload: the setup kinds, the untraced baseline and swatch's setups.

A Setup is one way of running a workload:
- kind "none":   the workload alone (the baseline);
- kind "launch": a tracer that starts the workload itself (`swatch run`, `strace -f`, ...);
- kind "attach": a tracer process started on the pid of a workload held at its gate;
- kind "pinned": a tracer loaded into the kernel on the held pid by a command that returns
  (`swatch load --pid`), read and unloaded after the workload ends.
post() turns what the tracer wrote into figures (events delivered, drops, children seen).

A BystanderTracer traces a sleeping pid while an untraced workload runs beside it.
The peers (strace, perf trace, bpftrace, syscount) are in peers.py.

swatch is read through its JSON: `swatch run --json` ends with one `{"type": "summary"}` line
on stderr, `swatch summary --json --once` prints the loaded tracer's counters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import (
    kill_group, last_json_line, poll_exit, read_text, reap, ru_cpu, sample_hwm, spawn, tail,
)
from bench.workloads import Workload


@dataclass
class Tools:
    """Where each tool is (None: absent) and, for an absent one, a line saying why."""

    bins: dict[str, str | None]
    missing: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        path = self.bins.get(name)
        assert path, name
        return path

    def why_not(self, names: tuple[str, ...]) -> str | None:
        for b in names:
            if not self.bins.get(b):
                return self.missing.get(b, f"{b} not found")
        return None


class Trial:
    """Per-trial scratch space."""

    def __init__(self, tmp: Path, wl: Workload | None) -> None:
        self.tmp = tmp
        self.wl = wl
        self.out = tmp / "tracer.stdout"
        self.err = tmp / "tracer.stderr"
        self.ready = tmp / "ready"
        self.facts: dict[str, Any] = {}  # what one step of a setup leaves for a later one


class Setup:
    name = "?"
    kind = "launch"  # none | launch | attach | pinned
    cls = "peer"  # baseline | peer | swatch
    does = ""  # what it does (stats / stream)
    slow = False  # runs the smaller workload sizes
    needs: tuple[str, ...] = ()
    ready_text: str | None = None  # attach: text on stdout that says "attached"

    def __init__(self, tools: Tools) -> None:
        self.tools = tools

    def unavailable(self) -> str | None:
        """Why this setup cannot run here (a missing tool), or None."""
        return self.tools.why_not(self.needs)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        raise NotImplementedError

    def stderr_path(self, t: Trial) -> Path:
        return t.err

    def attach_argv(self, pid: int, t: Trial) -> list[Any]:
        raise NotImplementedError

    def is_ready(self, t: Trial) -> bool:
        if self.ready_text is not None:
            return self.ready_text in read_text(t.out)
        return t.ready.exists()

    def attach(self, pid: int, t: Trial, env: dict[str, str]) -> str | None:
        """kind "pinned": load on pid; None when attached, else an error."""
        raise NotImplementedError

    def detach(self, t: Trial, env: dict[str, str]) -> dict[str, Any]:
        """kind "pinned": read the counters, unload; figures for the record."""
        raise NotImplementedError

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        return {}


class Untraced(Setup):
    name, kind, cls, does = "untraced", "none", "baseline", "-"


def swatch_cli(tools: Tools, *args: Any, pin_dir: str, env: dict[str, str],
               timeout: float = 120) -> tuple[int | None, Any, str, int]:
    """Run `swatch ARGS --pin-dir DIR` to its end: (rc, rusage, stdout+stderr, peak RSS kB)."""
    argv = [tools["swatch"], *args, "--pin-dir", pin_dir]
    with tempfile.TemporaryFile() as fo:
        p = spawn(argv, stdout=fo, stderr=subprocess.STDOUT, env=env, desc=f"swatch {args[0]}")
        st, ru, _ = reap(p, timeout)
        if st is None:
            kill_group(p, signal.SIGKILL)
        fo.seek(0)
        return p.returncode, ru, fo.read().decode(errors="replace"), getattr(p, "hwm_kb", 0)


def summary_json(tools: Tools, pin_dir: str,
                 env: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    """`swatch summary --json --once` of the tracer pinned in pin_dir: (object, error)."""
    rc, _ru, out, _ = swatch_cli(tools, "summary", "--json", "--once", pin_dir=pin_dir, env=env)
    obj = last_json_line(out, by="syscall") if rc == 0 else None
    return obj, ("" if obj else f"swatch summary --json rc={rc}: {tail(out, 300)}")


def run_summary(text: str) -> tuple[dict[str, Any], str]:
    """`swatch run --json`'s last line (type "summary"): (object, error)."""
    s = last_json_line(text, type="summary")
    return (s or {}), ("" if s else f"no JSON summary line from swatch run: {tail(text, 300)}")


class SwatchStats(Setup):
    name, cls, does, needs = "swatch stats", "swatch", "stats (in-kernel counts)", ("swatch",)

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        # --json: the summary is one JSON line on stderr (nothing else is written: no events)
        return [self.tools["swatch"], "run", "--stats-only", "--json", "--", *cmd]

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        s, err = run_summary(read_text(t.err))
        if err:
            return {"error": err}
        out: dict[str, Any] = {"counted_syscalls": s.get("syscalls"),
                               "counted_processes": s.get("processes")}
        if s.get("warnings"):
            out["swatch_warnings"] = s["warnings"]
        if t.wl and t.wl.name == "forkexec" and isinstance(s.get("processes"), int):
            out["children_seen"] = s["processes"] - 1  # the workload itself is one
        return out


class SwatchStatsNoLatency(SwatchStats):
    """`swatch run --stats-only --no-latency`: sys_exit alone, no clock read (as `syscount -p`
    without -L); every counter but the latency."""

    name, does = "swatch stats --no-latency", "stats without latency (in-kernel counts)"

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["swatch"], "run", "--stats-only", "--no-latency", "--json", "--", *cmd]


def scan_stream(path: Path, wl_pid: int) -> dict[str, int]:
    """One pass over a JSON-lines trace: event records, `lost` records, exec records of pids
    other than wl_pid (the workload's children), lines that are not JSON records."""
    n = {"records": 0, "lost_records": 0, "child_execs": 0, "other_lines": 0}
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.startswith(b"{"):
                    n["other_lines"] += 1
                elif b'"type":"lost"' in line:
                    n["lost_records"] += 1
                elif b'"type":"summary"' in line or b'"type": "summary"' in line:
                    continue
                else:
                    n["records"] += 1
                    if b'"exec"' in line:
                        try:
                            ev = json.loads(line)
                        except ValueError:
                            continue
                        if ev.get("type") == "exec" and ev.get("pid") != wl_pid:
                            n["child_execs"] += 1
    except FileNotFoundError:
        pass
    return n


class SwatchStream(Setup):
    """Every syscall as a JSON line. The trace goes to stderr, which is a file on tmpfs, so that
    `swatch run` ends it with its JSON summary line (with -o FILE the summary is human text)."""

    name, cls, does, needs = ("swatch json", "swatch", "stream (ring buffer -> JSON lines)",
                              ("swatch",))

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [self.tools["swatch"], "run", "--json", "--filter", "all", "--", *cmd]

    def stderr_path(self, t: Trial) -> Path:
        return t.tmp / "events.jsonl"

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        path = self.stderr_path(t)
        with open(path, "rb") as f:  # the summary is the last line: read the end only
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            s, err = run_summary(f.read().decode(errors="replace"))
        if err:
            return {"error": err}
        ev = s.get("events", {})
        n = scan_stream(path, wl_pid)
        out: dict[str, Any] = {"delivered": ev.get("delivered"), "dropped": ev.get("dropped"),
                               "emitted": ev.get("emitted"), "jsonl_lines": n["records"],
                               "lost_records": n["lost_records"]}
        if n["other_lines"]:
            out["non_json_lines"] = n["other_lines"]
        if None not in (out["emitted"], out["delivered"], out["dropped"]):
            out["emitted_eq_delivered_plus_dropped"] = (
                out["emitted"] == out["delivered"] + out["dropped"])
        if t.wl and t.wl.name == "forkexec":
            out["children_seen"] = n["child_execs"]
        return out


class Before:
    """A swatch setup run with another swatch (env BENCH_SWATCH_BEFORE: its executable, e.g.
    /work/main/.venv/bin/swatch, with its own Python and BPF object): "before" and "after" of
    a change in one interleaved run."""

    ENV = "BENCH_SWATCH_BEFORE"

    @staticmethod
    def swatch() -> str | None:
        return os.environ.get(Before.ENV) or None


class SwatchStatsBefore(SwatchStats):
    name = "swatch stats (before)"

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [Before.swatch(), *super().launch_argv(cmd, t)[1:]]


class SwatchStreamBefore(SwatchStream):
    name = "swatch json (before)"

    def launch_argv(self, cmd: list[str], t: Trial) -> list[Any]:
        return [Before.swatch(), *super().launch_argv(cmd, t)[1:]]


class SwatchPinned(Setup):
    """`swatch load --pid PID` (pinned, no consumer process), as `syscount -p` attaches to a
    pid; after the workload, `swatch summary --json` gives the exact per-syscall counts."""

    name, kind, cls, does, needs = ("swatch load --pid", "pinned", "swatch",
                                    "stats (in-kernel counts, pinned)", ("swatch",))

    def __init__(self, tools: Tools, pin_dir: str) -> None:
        super().__init__(tools)
        self.pin_dir = pin_dir

    load_args: tuple[str, ...] = ()

    def attach(self, pid: int, t: Trial, env: dict[str, str]) -> str | None:
        rc, ru, out, hwm = swatch_cli(self.tools, "load", "--pid", pid, *self.load_args,
                                      pin_dir=self.pin_dir, env=env)
        t.facts["load_cpu_s"], t.facts["load_hwm_kb"] = ru_cpu(ru), hwm
        return None if rc == 0 else f"swatch load rc={rc}: {tail(out)}"

    def detach(self, t: Trial, env: dict[str, str]) -> dict[str, Any]:
        s, err = summary_json(self.tools, self.pin_dir, env)
        rc, _ru, out, _ = swatch_cli(self.tools, "unload", pin_dir=self.pin_dir, env=env)
        rec: dict[str, Any] = {"tracer_cpu_s": t.facts.get("load_cpu_s"),
                               "tracer_maxrss_kb": t.facts.get("load_hwm_kb") or None}
        if rc != 0:
            err = (err + "; " if err else "") + f"swatch unload rc={rc}: {tail(out)}"
        if err:
            rec["error"] = err
        if s:
            rec["counted_syscalls"] = s["total"]["count"]
            rec["counted_processes"] = t.facts["counted_processes"] = s.get("processes")
            t.facts["counted_by_syscall"] = {r["name"]: r["count"] for r in s["rows"]}
            rec["events_dropped"] = s.get("events_dropped")
        return rec

    def post(self, t: Trial, res: dict[str, Any], wl_pid: int) -> dict[str, Any]:
        """Children seen, or the storms' own syscall counted: the loop made `calls` of them
        (read also counts the gate's read when its exit comes after the load)."""
        procs = t.facts.get("counted_processes")
        if t.wl and t.wl.name == "forkexec" and isinstance(procs, int):
            return {"children_seen": procs - 1}  # the workload itself is one
        own = {"read": "read", "getppid": "getppid"}.get(t.wl.name if t.wl else "")
        counted = t.facts.get("counted_by_syscall")
        if not own or counted is None:
            return {}
        n = counted.get(own, 0)
        return {"counted_own_syscall": n, "own_syscall_missed": max(0, res["calls"] - n)}


class SwatchPinnedNoLatency(SwatchPinned):
    """`swatch load --pid PID --no-latency`: SwatchPinned counting at sys_exit alone."""

    name, does = "swatch load --pid --no-latency", "stats without latency (pinned)"
    load_args = ("--no-latency",)


def lease_held(pin_dir: str) -> bool:
    """Does a `swatch detect` hold the lease of the tracer pinned in pin_dir (docs/detect.md)?"""
    from syscall_watcher.kernel import libbpf
    from syscall_watcher.kernel.libbpf import lib
    from syscall_watcher.trace.tracer import PinnedSession

    session = PinnedSession.open(Path(pin_dir))
    try:
        key, val = libbpf.new("uint32_t *", lib.SW_DETECT_LEASE), libbpf.new("uint64_t *")
        return bool(session.maps["detect"].lookup(key, val)) and val[0] > time.monotonic_ns()
    finally:
        session.close()


def start_detect(swatch: str, pin_dir: str, env: dict[str, str],
                 timeout: float = 30.0) -> tuple[Any, str]:
    """`swatch detect --pin-dir` on a pinned tracer, observing (its lease held: the file-bytes
    counters and the DNS capture on) until ended: (process, "") or (None, error)."""
    p = spawn([swatch, "detect", "--pin-dir", pin_dir, "--samples", "1", "--interval", "3600"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, desc="swatch detect")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lease_held(pin_dir):
            return p, ""
        if poll_exit(p):
            return None, f"swatch detect exited rc={p.returncode} before taking the lease"
        time.sleep(0.05)
    kill_group(p, signal.SIGTERM)
    return None, f"swatch detect did not take the lease within {timeout:.0f}s"


class SwatchPinnedDetect(SwatchPinned):
    """`swatch load --pid PID` with a `swatch detect --pin-dir` observing it for the whole loop:
    what a syscall costs while detect holds the lease, against SwatchPinned (what `summary`
    alone costs). Ended with SIGTERM (detect clears the lease) before the counters are read."""

    name, does = "swatch load --pid + detect", "stats + detect's lease (pinned)"

    def attach(self, pid: int, t: Trial, env: dict[str, str]) -> str | None:
        err = super().attach(pid, t, env)
        if err:
            return err
        t.facts["detect"], err = start_detect(self.tools["swatch"], self.pin_dir, env)
        return err or None

    def detach(self, t: Trial, env: dict[str, str]) -> dict[str, Any]:
        p = t.facts.pop("detect", None)
        rec: dict[str, Any] = {}
        if p is not None:
            kill_group(p, signal.SIGTERM, grace=15.0)
            if lease_held(self.pin_dir):
                rec["error"] = "swatch detect left its lease held after SIGTERM"
        out = super().detach(t, env)
        if "error" in rec:
            out["error"] = "; ".join(filter(None, [out.get("error"), rec["error"]]))
        return out


class SwatchPinnedDetectBefore(SwatchPinnedDetect):
    """SwatchPinnedDetect with the "before" swatch (BENCH_SWATCH_BEFORE)."""

    name = "swatch load --pid + detect (before)"

    def __init__(self, tools: Tools, pin_dir: str) -> None:
        super().__init__(Tools({**tools.bins, "swatch": str(Before.swatch())}, tools.missing),
                         pin_dir)


class SwatchPinnedBefore(SwatchPinned):
    """SwatchPinned with the "before" swatch (BENCH_SWATCH_BEFORE)."""

    name = "swatch load --pid (before)"

    def __init__(self, tools: Tools, pin_dir: str) -> None:
        super().__init__(Tools({**tools.bins, "swatch": str(Before.swatch())}, tools.missing),
                         pin_dir)


class SwatchPinnedNoLatencyBefore(SwatchPinnedBefore):
    """SwatchPinnedNoLatency with the "before" swatch (BENCH_SWATCH_BEFORE)."""

    name = "swatch load --pid --no-latency (before)"
    load_args = ("--no-latency",)


# ------------------------------------------------------------------------------ bystander
class BystanderTracer:
    """A tracer watching a sleeping pid while an untraced workload runs beside it."""

    def __init__(self, name: str, tools: Tools, env: dict[str, str], ready_timeout: float) -> None:
        self.name, self.tools, self.env, self.ready_timeout = name, tools, env, ready_timeout
        self.proc: Any = None
        self.needs: tuple[str, ...] = ()

    def unavailable(self) -> str | None:
        return self.tools.why_not(self.needs)

    def start(self, target_pid: int, tmp: Path) -> str | None:
        """Start tracing target_pid; None when attached, else an error."""
        return None

    def stop(self) -> dict[str, Any]:
        """Stop tracing: tracer_cpu_s, tracer_maxrss_kb and anything else read at the end."""
        return {"tracer_cpu_s": None, "tracer_maxrss_kb": None}

    def _attached_proc(self, argv: list[Any], tmp: Path, ready: Any) -> str | None:
        out, err = tmp / "tracer.stdout", tmp / "tracer.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            self.proc = spawn(argv, stdout=fo, stderr=fe, env=self.env, desc=self.name)
        deadline = time.monotonic() + self.ready_timeout
        while not ready(out):
            sample_hwm(self.proc)
            if poll_exit(self.proc):
                return (f"exited rc={self.proc.returncode}: "
                        f"{tail(read_text(err) + read_text(out))}")
            if time.monotonic() > deadline:
                return f"not ready after {self.ready_timeout:.0f}s: {tail(read_text(err))}"
            time.sleep(0.01)
        return None

    def _stop_proc(self) -> dict[str, Any]:
        if self.proc is None:
            return {"tracer_cpu_s": None, "tracer_maxrss_kb": None}
        p, self.proc = self.proc, None
        ru = kill_group(p, signal.SIGINT, grace=15.0)
        return {"tracer_cpu_s": ru_cpu(ru) if ru else None,
                "tracer_maxrss_kb": getattr(p, "hwm_kb", None)}


class BNone(BystanderTracer):
    pass


class BSwatch(BystanderTracer):
    """`swatch load --pid OTHER` into a private pin dir; before unloading, `swatch summary
    --json` shows what it counted, which must not include the bystander's calls."""

    def __init__(self, name: str, tools: Tools, env: dict[str, str], ready_timeout: float,
                 pin_dir: str, filter_all: bool, no_latency: bool = False) -> None:
        super().__init__(name, tools, env, ready_timeout)
        self.needs = ("swatch",)
        self.pin_dir, self.filter_all, self.no_latency = pin_dir, filter_all, no_latency
        self.loaded = False
        self.load_ru: Any = None
        self.hwm_kb = 0

    def start(self, target_pid: int, tmp: Path) -> str | None:
        args = (["load", "--pid", str(target_pid)] + (["--filter", "all"] if self.filter_all else [])
                + (["--no-latency"] if self.no_latency else []))
        self.loaded = True  # unload even if load half-succeeded
        rc, self.load_ru, out, self.hwm_kb = swatch_cli(self.tools, *args, pin_dir=self.pin_dir,
                                                        env=self.env)
        return None if rc == 0 else f"swatch load rc={rc}: {tail(out)}"

    def stop(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"tracer_cpu_s": ru_cpu(self.load_ru) if self.load_ru else None,
                               "tracer_maxrss_kb": self.hwm_kb or None}
        if self.loaded:
            s, err = summary_json(self.tools, self.pin_dir, self.env)
            if s:
                rec["counted_syscalls"] = s["total"]["count"]
            else:
                rec["error"] = err
            rc, _ru, out, _ = swatch_cli(self.tools, "unload", pin_dir=self.pin_dir, env=self.env)
            self.loaded = False
            if rc != 0:
                rec["error"] = f"swatch unload rc={rc}: {tail(out)}"
        return rec


class BSwatchBefore(BSwatch):
    """The bystander's swatch, with the "before" swatch (BENCH_SWATCH_BEFORE)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.tools = Tools({**self.tools.bins, "swatch": str(Before.swatch())}, self.tools.missing)
