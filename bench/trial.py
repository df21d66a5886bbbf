"""One trial: a workload run once under one setup, in its own scratch directory.

Launch setups start the workload themselves. Attach and pinned setups get the workload held at
its gate (BENCH_GATE_FD: it blocks on a pipe before its timed loop) until the tracer is attached,
so tracer start-up never enters the workload's own timing. A trial's record holds the workload's
RESULT, wall time, the tracer's CPU and peak RSS, and what the setup's post() read.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import progstats
from bench.procs import (
    CLEANUP_HOOKS, kill_group, parse_result, poll_exit, rc_text, read_text, reap, ru_cpu,
    sample_hwm, spawn, tail, workload_reaped_by_tracer,
)
from bench.setups import Setup, Trial
from bench.workloads import Workload


class TrialRunner:
    def __init__(self, quick: bool, pin_dir: str, tmp: str | None, keep_tmp: bool) -> None:
        self.quick, self.pin_dir, self.keep_tmp = quick, pin_dir, keep_tmp
        self.timeout = 90.0 if quick else 600.0
        self.ready_timeout = 30.0
        self.base = Path(tempfile.mkdtemp(prefix="swatch-bench-", dir=tmp))
        CLEANUP_HOOKS.append(lambda: shutil.rmtree(self.base, ignore_errors=True))
        self.seq = 0
        self.bpf_stats = False  # snapshot the new programs' run-time stats (programs part)

    def new_trial(self, wl: Workload | None) -> Trial:
        self.seq += 1
        d = self.base / f"t{self.seq}"
        d.mkdir()
        (d / "data").mkdir()
        return Trial(d, wl)

    def drop_trial(self, t: Trial) -> None:
        if not self.keep_tmp:
            shutil.rmtree(t.tmp, ignore_errors=True)

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.pop("BENCH_GATE_FD", None)
        e["SWATCH_PIN_DIR"] = self.pin_dir
        return e

    def run(self, setup: Setup, wl: Workload, argv: list[str] | None = None) -> dict[str, Any]:
        t = self.new_trial(wl)
        try:
            cmd = argv or wl.argv(self.quick, setup.slow, t.tmp / "data")
            cmd = [str(c) for c in cmd]
            rec: dict[str, Any] = {"setup": setup.name, "cmd": " ".join(cmd)}
            if setup.kind in ("none", "launch"):
                return self._launched(setup, cmd, t, rec)
            return self._held(setup, cmd, t, rec)
        finally:
            self.drop_trial(t)

    @staticmethod
    def _result(wl_out: Path, wl_err: Path,
                rc: int | None) -> tuple[dict[str, Any] | None, str]:
        text = read_text(wl_out)
        res = parse_result(text)
        if res is None:
            return None, (f"no RESULT line ({rc_text(rc)}); "
                          f"stderr: {tail(read_text(wl_err), 400)!r} stdout: {tail(text, 200)!r}")
        return res, ""

    def _launched(self, setup: Setup, cmd: list[str], t: Trial,
                  rec: dict[str, Any]) -> dict[str, Any]:
        full = cmd if setup.kind == "none" else [str(a) for a in setup.launch_argv(cmd, t)]
        rec["argv"] = full
        err_path = setup.stderr_path(t)
        with open(t.out, "wb") as fo, open(err_path, "wb") as fe:
            t0 = time.monotonic()
            p = spawn(full, stdout=fo, stderr=fe, env=self.env(), desc=setup.name)
            st, ru, t1 = reap(p, self.timeout)
        if st is None:
            kill_group(p, signal.SIGKILL)
            rec["error"] = f"timeout after {self.timeout:.0f}s"
            return rec
        rec["wall_s"] = t1 - t0
        rec["rc"] = p.returncode
        res, err = self._result(t.out, err_path, p.returncode)
        if res is None:
            rec["error"] = f"{setup.name}: {err}"
            return rec
        rec["result"] = res
        if setup.kind == "launch":
            # wait4 on the tracer counts the workload too if (and only if) the tracer reaped it
            wl_cpu = (res.get("cpu_self_ns", 0) + res.get("cpu_children_ns", 0)) / 1e9
            if workload_reaped_by_tracer(int(res.get("pid", -1))):
                rec["tracer_cpu_s"] = max(0.0, ru_cpu(ru) - wl_cpu)
            else:
                rec["tracer_cpu_s"] = ru_cpu(ru)
            rec["tracer_maxrss_kb"] = getattr(p, "hwm_kb", None)
        if p.returncode != 0:
            rec["error"] = (f"{setup.name} {rc_text(p.returncode)}; "
                            f"stderr: {tail(read_text(err_path))}")
        extra = setup.post(t, res, res.get("pid", -1))
        if "error" in extra and "error" in rec:
            extra["error"] = rec["error"] + "; " + extra["error"]
        rec.update(extra)
        return rec

    def _wait_attached(self, setup: Setup, t: Trial, tracer: Any) -> str:
        deadline = time.monotonic() + self.ready_timeout
        while not setup.is_ready(t):
            sample_hwm(tracer)
            if poll_exit(tracer):
                return (f"{setup.name} exited (rc={tracer.returncode}) before attaching: "
                        f"{tail(read_text(t.err) + read_text(t.out))}")
            if time.monotonic() > deadline:
                return (f"{setup.name} not ready after {self.ready_timeout:.0f}s: "
                        f"{tail(read_text(t.err))}")
            time.sleep(0.01)
        return ""

    def _held(self, setup: Setup, cmd: list[str], t: Trial,
              rec: dict[str, Any]) -> dict[str, Any]:
        """attach / pinned: start the workload held at its gate, attach, then release it."""
        r, w = os.pipe()
        env = self.env()
        env["BENCH_GATE_FD"] = str(r)
        wl_out, wl_err = t.tmp / "wl.stdout", t.tmp / "wl.stderr"
        tracer = None
        loaded = False
        assert t.wl is not None
        with open(wl_out, "wb") as wo, open(wl_err, "wb") as we:
            wp = spawn(cmd, stdout=wo, stderr=we, env=env, pass_fds=(r,),
                       desc=f"workload {t.wl.name}")
        os.close(r)
        progs_before = set(progstats.programs()) if self.bpf_stats else set()
        progs: dict[str, Any] | None = None
        try:
            t0 = time.monotonic()
            if setup.kind == "pinned":
                loaded = True  # unload even if the load half-succeeded
                err = setup.attach(wp.pid, t, self.env()) or ""
            else:
                targv = [str(a) for a in setup.attach_argv(wp.pid, t)]
                rec["argv"] = targv
                with open(t.out, "wb") as fo, open(t.err, "wb") as fe:
                    tracer = spawn(targv, stdout=fo, stderr=fe, env=self.env(), desc=setup.name)
                err = self._wait_attached(setup, t, tracer)
            if err:
                rec["error"] = err
                return rec
            rec["attach_s"] = time.monotonic() - t0
            os.write(w, b"g")
            os.close(w)
            w = -1
            st, _ru, _t = reap(wp, self.timeout, watch=(tracer,))
            if st is None:
                rec["error"] = f"workload timeout after {self.timeout:.0f}s"
                return rec
            if self.bpf_stats:  # while the tracer is still loaded
                progs = progstats.new_programs(progs_before)
            if tracer is not None:
                ru = kill_group(tracer, signal.SIGINT, grace=30.0)
                rec["tracer_cpu_s"] = ru_cpu(ru)
                rec["tracer_maxrss_kb"] = getattr(tracer, "hwm_kb", None)
            else:
                loaded = False
                rec.update(setup.detach(t, self.env()))
            rec["wall_s"] = time.monotonic() - t0
            res, err = self._result(wl_out, wl_err, wp.returncode)
            if res is None:
                rec["error"] = err
                return rec
            rec["result"] = res
            if progs is not None:
                rec["programs"] = progs
                rec.update(progstats.per_call(progs, res["calls"]))
            if wp.returncode != 0:
                rec["error"] = f"workload exit code {wp.returncode}: {tail(read_text(wl_err))}"
            rec.update(setup.post(t, res, wp.pid))
            return rec
        finally:
            if w >= 0:
                os.close(w)
            for p in (wp, tracer):
                if p is not None and p.returncode is None:
                    kill_group(p, signal.SIGKILL, grace=2.0)
            if loaded:
                setup.detach(t, self.env())
