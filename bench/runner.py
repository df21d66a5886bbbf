"""The three parts of the suite, each run as interleaved repetitions, then summarised as medians.

Each repetition goes round-robin over all setups of a part (order rotated per repetition), so
slow drift of a shared machine spreads over every setup alike; ratios are taken only between
setups of one run. A setup whose tool is missing is skipped (one line says why); a setup that
fails twice with no success is not run again.
"""

from __future__ import annotations

import signal
from typing import Any

from bench import peers, progstats
from bench.procs import kill_group, log, med, oneline, parse_result, read_text, reap, spawn, tail
from bench.setups import (
    Before, BNone, BSwatch, BSwatchBefore, BystanderTracer, Setup, SwatchPinned,
    SwatchPinnedBefore, SwatchPinnedDetect, SwatchPinnedDetectBefore, SwatchPinnedNoLatency,
    SwatchPinnedNoLatencyBefore, SwatchStats, SwatchStatsBefore, SwatchStatsNoLatency,
    SwatchStream, SwatchStreamBefore, Tools, Untraced,
)
from bench.trial import TrialRunner
from bench.workloads import BUILD, BY_NAME, WORKLOADS


def syscall_setups(tools: Tools, pin_dir: str, names: set[str] | None = None) -> list[Setup]:
    """The setups of the syscall workloads; with names, only those (and always "untraced",
    the baseline of every ratio)."""
    every = [Untraced(tools), peers.StraceF(tools), peers.StraceFC(tools),
             peers.PerfTrace(tools), peers.BpftraceCount(tools), peers.BpftracePrintf(tools),
             peers.Syscount(tools), peers.SyscountL(tools), SwatchStats(tools),
             SwatchStatsNoLatency(tools), SwatchPinned(tools, pin_dir),
             SwatchPinnedNoLatency(tools, pin_dir), SwatchPinnedDetect(tools, pin_dir),
             SwatchStream(tools)] + (
                 [SwatchStatsBefore(tools), SwatchStreamBefore(tools),
                  SwatchPinnedBefore(tools, pin_dir), SwatchPinnedNoLatencyBefore(tools, pin_dir),
                  SwatchPinnedDetectBefore(tools, pin_dir)]
                 if Before.swatch() else [])
    return [s for s in every if not names or s.name in names or s.name == "untraced"]


def stream_setups(tools: Tools) -> list[Setup]:
    return [SwatchStream(tools), peers.StreamBpftrace(tools), peers.StreamPerf(tools),
            peers.StreamStrace(tools)]


def bystander_tracers(tools: Tools, runner: TrialRunner) -> list[BystanderTracer]:
    a = (tools, runner.env(), runner.ready_timeout)
    return [BNone("none (baseline)", *a),
            peers.BSyscount("syscount -p OTHER", *a),
            peers.BSyscount("syscount -p -L OTHER", *a),
            peers.BBpftrace("bpftrace count enter", *a, exit_probe=False),
            peers.BBpftrace("bpftrace count enter+exit", *a, exit_probe=True),
            BSwatch("swatch load --pid OTHER", *a, pin_dir=runner.pin_dir, filter_all=False),
            BSwatch("swatch load --pid OTHER --filter all", *a, pin_dir=runner.pin_dir,
                    filter_all=True),
            BSwatch("swatch load --pid OTHER --no-latency", *a, pin_dir=runner.pin_dir,
                    filter_all=False, no_latency=True)] + (
                [BSwatchBefore("swatch load --pid OTHER (before)", *a, pin_dir=runner.pin_dir,
                               filter_all=False),
                 BSwatchBefore("swatch load --pid OTHER --no-latency (before)", *a,
                               pin_dir=runner.pin_dir, filter_all=False, no_latency=True)]
                if Before.swatch() else [])


def summarize(runs: list[dict[str, Any]], baseline_med: float | None) -> dict[str, Any]:
    """Medians over the runs of one setup, and its ratio to the untraced median."""
    skipped = [r["skipped"] for r in runs if "skipped" in r]
    if skipped and len(skipped) == len(runs):
        return {"status": "skipped", "reason": skipped[0], "runs_ok": 0, "runs_failed": 0}
    ok = [r for r in runs if "error" not in r and "result" in r]
    errs = [r["error"] for r in runs if "error" in r]
    s: dict[str, Any] = {"runs_ok": len(ok), "runs_failed": len(errs)}
    if errs:
        s["errors"] = sorted(set(errs))[:3]
    if not ok:
        s["status"] = "failed"
        s["reason"] = errs[0] if errs else "not run"
        return s
    s["status"] = "ok"
    nspc = [r["result"]["ns_per_call"] for r in ok]
    s["calls"] = ok[0]["result"].get("calls")
    s["median_ns_per_call"] = med(nspc)
    s["min_ns_per_call"], s["max_ns_per_call"] = min(nspc), max(nspc)
    if "ns_per_op" in ok[0]["result"]:
        s["median_ns_per_op"] = med([r["result"]["ns_per_op"] for r in ok])
    s["median_loop_s"] = med([r["result"]["ns_total"] / 1e9 for r in ok])
    s["median_wall_s"] = med([r.get("wall_s") for r in ok])
    s["median_tracer_cpu_s"] = med([r.get("tracer_cpu_s") for r in ok])
    s["max_tracer_maxrss_kb"] = max((r.get("tracer_maxrss_kb") or 0 for r in ok),
                                    default=None) or None
    for key in ("children_seen", "delivered", "dropped", "jsonl_lines", "counted_syscalls",
                "counted_own_syscall"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            s["median_" + key] = med(vals)
    for key in ("own_syscall_missed", "non_json_lines"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            s["max_" + key] = max(vals)
    if "children" in ok[0]["result"]:
        s["children_expected"] = ok[0]["result"]["calls"]
        s["median_children_ok"] = med([r["result"].get("children_ok") for r in ok])
    notes = {r.get("note") for r in ok if r.get("note")}
    if notes:
        s["note"] = "; ".join(sorted(notes))
    if baseline_med:
        s["vs_untraced"] = s["median_ns_per_call"] / baseline_med
        s["added_ns_per_call"] = s["median_ns_per_call"] - baseline_med
    return s


def _rotated(items: list[Any], rep: int) -> list[Any]:
    k = rep % len(items)
    return items[k:] + items[:k]


def _say(rep: int, reps: int, part: str, name: str, rec: dict[str, Any], ok_text: str) -> None:
    msg = ok_text if "error" not in rec else "FAILED: " + oneline(rec["error"])[:200]
    log(f"  rep {rep + 1}/{reps} {part:9s} {name:38s} {msg}")


def _give_up(runs: list[dict[str, Any]]) -> bool:
    """Two failures and no success: stop spending time on it."""
    return len(runs) >= 2 and all("error" in r for r in runs)


def run_syscall_workloads(runner: TrialRunner, tools: Tools, reps: int,
                          only: set[str] | None,
                          setup_names: set[str] | None = None) -> dict[str, Any]:
    setups = syscall_setups(tools, runner.pin_dir, setup_names)
    wls = [w for w in WORKLOADS if not only or w.name in only]
    results = {w.name: {"desc": w.desc, "runs": {s.name: [] for s in setups}} for w in wls}
    dead: dict[tuple[str, str], str] = {}
    for rep in range(reps):
        for wl in wls:
            for s in _rotated(setups, rep):
                runs = results[wl.name]["runs"][s.name]
                why = s.unavailable()
                if why:
                    runs.append({"setup": s.name, "skipped": why})
                    continue
                if (wl.name, s.name) in dead:
                    runs.append({"setup": s.name, "error": dead[(wl.name, s.name)]})
                    continue
                rec = runner.run(s, wl)
                rec["rep"] = rep
                runs.append(rec)
                _say(rep, reps, wl.name, s.name, rec,
                     f"{rec.get('result', {}).get('ns_per_call', 0):.1f} ns/call")
                if _give_up(runs):
                    dead[(wl.name, s.name)] = rec["error"]
    for w in results.values():
        base = summarize(w["runs"]["untraced"], None).get("median_ns_per_call")
        w["summary"] = {name: summarize(runs, base) for name, runs in w["runs"].items()}
        w["untraced_median_ns_per_call"] = base
        ok_peers = {n: s for n, s in w["summary"].items() if s.get("status") == "ok"
                    and n != "untraced" and not n.startswith("swatch")}
        if ok_peers:
            best = min(ok_peers, key=lambda n: ok_peers[n]["median_ns_per_call"])
            w["best_peer"] = best
            for s in w["summary"].values():
                if s.get("status") == "ok":
                    s["vs_best_peer"] = (s["median_ns_per_call"]
                                         / ok_peers[best]["median_ns_per_call"])
    return results


def _bystander_once(runner: TrialRunner, tr: BystanderTracer) -> dict[str, Any]:
    wl = BY_NAME["getppid"]
    trial = runner.new_trial(wl)
    target = spawn(["sleep", "3600"], desc="bystander target")
    rec: dict[str, Any] = {}
    try:
        err = tr.start(target.pid, trial.tmp)
        if err:
            rec["error"] = err
            return rec
        cmd = wl.argv(runner.quick, False, trial.tmp)
        out, err_path = trial.tmp / "wl.out", trial.tmp / "wl.err"
        with open(out, "wb") as fo, open(err_path, "wb") as fe:
            p = spawn(cmd, stdout=fo, stderr=fe, env=runner.env(), desc="bystander workload")
            st, _ru, _ = reap(p, runner.timeout, watch=(tr.proc,))
        if st is None:
            kill_group(p, signal.SIGKILL)
            rec["error"] = "workload timeout"
            return rec
        res = parse_result(read_text(out))
        if res is None:
            rec["error"] = f"no RESULT: {tail(read_text(err_path))}"
        else:
            rec["result"] = res
        return rec
    finally:
        stopped = tr.stop()
        if "error" in stopped and "error" not in rec:
            rec["error"] = stopped.pop("error")
        rec.update(stopped)
        counted = rec.get("counted_syscalls")
        if counted is not None and "result" in rec and counted >= rec["result"]["calls"]:
            rec["error"] = (f"swatch counted {counted} syscalls of a sleeping pid while the "
                            f"bystander made {rec['result']['calls']}: the filter let it in")
        kill_group(target, signal.SIGKILL, grace=2.0)
        runner.drop_trial(trial)


def run_bystander(runner: TrialRunner, tools: Tools, reps: int,
                  names: set[str] | None = None) -> dict[str, Any]:
    """The bystander part; with names, only those tracers (and always the baseline)."""
    every = bystander_tracers(tools, runner)
    if names and names - {t.name for t in every}:
        raise SystemExit(f"bench: error: --bystanders: unknown tracer(s) "
                         f"{', '.join(sorted(names - {t.name for t in every}))}; choose from "
                         f"{', '.join(t.name for t in every)}")
    tracers = [t for t in every if not names or t.name in names or t.name == "none (baseline)"]
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in tracers}
    dead: dict[str, str] = {}
    for rep in range(reps):
        for tr in _rotated(tracers, rep):
            why = tr.unavailable()
            if why:
                runs[tr.name].append({"skipped": why})
                continue
            if tr.name in dead:
                runs[tr.name].append({"error": dead[tr.name]})
                continue
            rec = _bystander_once(runner, tr)
            rec["rep"] = rep
            runs[tr.name].append(rec)
            _say(rep, reps, "bystander", tr.name, rec,
                 f"{rec.get('result', {}).get('ns_per_call', 0):.1f} ns/call")
            if _give_up(runs[tr.name]):
                dead[tr.name] = rec["error"]
    base = summarize(runs["none (baseline)"], None).get("median_ns_per_call")
    return {"desc": "getppid loop in a process nobody traces while the tracer watches a "
                    "sleeping pid",
            "runs": runs, "summary": {n: summarize(r, base) for n, r in runs.items()},
            "untraced_median_ns_per_call": base}


def run_streaming(runner: TrialRunner, tools: Tools, reps: int) -> dict[str, Any]:
    n = 10_000 if runner.quick else 500_000
    wl = BY_NAME["read"]
    setups = stream_setups(tools)
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in setups}
    dead: dict[str, str] = {}
    for rep in range(reps):
        for s in _rotated(setups, rep):
            why = s.unavailable()
            if why:
                runs[s.name].append({"skipped": why})
                continue
            if s.name in dead:
                runs[s.name].append({"error": dead[s.name]})
                continue
            rec = runner.run(s, wl, argv=[str(BUILD / wl.prog), str(n)])
            rec["rep"] = rep
            if "error" not in rec and rec.get("wall_s"):
                rec["events_per_s"] = (rec.get("delivered") or 0) / rec["wall_s"]
                rec["events_per_s_loop"] = ((rec.get("delivered") or 0)
                                            / (rec["result"]["ns_total"] / 1e9))
            runs[s.name].append(rec)
            _say(rep, reps, "streaming", s.name, rec,
                 f"delivered={rec.get('delivered')} dropped={rec.get('dropped')} "
                 f"{rec.get('events_per_s', 0):,.0f} ev/s")
            if _give_up(runs[s.name]):
                dead[s.name] = rec["error"]
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs, None)
        ok = [r for r in rs if "error" not in r and "skipped" not in r]
        if ok:
            s["median_events_per_s"] = med([r.get("events_per_s") for r in ok])
            s["median_events_per_s_loop"] = med([r.get("events_per_s_loop") for r in ok])
            s["total_delivered"] = sum(r.get("delivered") or 0 for r in ok)
            s["total_dropped"] = sum(r.get("dropped") or 0 for r in ok)
            if any("emitted" in r for r in ok):
                s["emitted_eq_delivered_plus_dropped_all_runs"] = all(
                    r.get("emitted_eq_delivered_plus_dropped") for r in ok)
            if any("jsonl_lines" in r for r in ok):
                s["jsonl_lines_match_delivered"] = all(
                    r.get("jsonl_lines") == r.get("delivered") for r in ok)
        summary[name] = s
    return {"desc": f"{n} 1-byte reads; events delivered to a file on tmpfs / tracer wall time "
                    "(start-up and drain included); "
                    "events_per_s_loop divides by the workload's own loop time instead",
            "calls": n, "runs": runs, "summary": summary}


def run_programs(runner: TrialRunner, tools: Tools, reps: int) -> dict[str, Any]:
    """Per-program BPF cost (kernel run-time stats, on only for this part) of the tracers that
    stay loaded on a held storm: what each program costs per run and per call of the loop."""
    setups = [peers.Syscount(tools), peers.SyscountL(tools), peers.BpftraceCount(tools),
              SwatchPinned(tools, runner.pin_dir), SwatchPinnedNoLatency(tools, runner.pin_dir)]
    wls = [BY_NAME["read"], BY_NAME["getppid"]]
    out: dict[str, Any] = {"desc": "BPF run time per program (kernel.bpf_stats via "
                                   "bpf_enable_stats, on during this part only)"}
    with progstats.BpfStats() as stats:
        if stats.error:
            log(f"programs: skipped: {stats.error}")
            return {**out, "skipped": stats.error}
        runner.bpf_stats = True
        try:
            runs = {w.name: {s.name: [] for s in setups} for w in wls}
            for rep in range(reps):
                for wl in wls:
                    for s in _rotated(setups, rep):
                        why = s.unavailable()
                        if why:
                            runs[wl.name][s.name].append({"skipped": why})
                            continue
                        rec = runner.run(s, wl)
                        rec["rep"] = rep
                        runs[wl.name][s.name].append(rec)
                        _say(rep, reps, wl.name, f"{s.name} (bpf stats)", rec,
                             f"{rec.get('bpf_ns_per_call', 0):.1f} BPF ns/call")
        finally:
            runner.bpf_stats = False
    out["runs"] = runs
    out["summary"] = {w: {s: _programs_summary(rs) for s, rs in by_setup.items()}
                      for w, by_setup in runs.items()}
    return out


def _programs_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "programs" in r and "error" not in r]
    if not ok:
        bad = [r.get("skipped") or r.get("error") for r in runs]
        return {"status": "skipped" if runs and "skipped" in runs[0] else "failed",
                "reason": bad[0] if bad else "not run"}
    names = sorted({n for r in ok for n in r["programs"]})
    return {"status": "ok", "runs_ok": len(ok),
            "median_bpf_ns_per_call": med([r["bpf_ns_per_call"] for r in ok]),
            "programs": {n: {"median_ns_per_run": med([r["programs"][n]["ns_per_run"]
                                                       for r in ok if n in r["programs"]]),
                             "median_runs_per_call": med([r["runs_per_call"][n]
                                                          for r in ok if n in r["programs"]])}
                         for n in names}}
