"""swatch detect's observation window: snapshots of the kernel counters, N samples apart, and
the score of what changed (one target, or one score per process tree for --all)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from syscall_watcher.detect import counters, score
from syscall_watcher.detect.counters import Lease, Snapshot
from syscall_watcher.detect.dns import DnsRing, NameBook
from syscall_watcher.kernel.libbpf import MapFd
from syscall_watcher.trace.pidstats import ProcessCounts

STEP_S = 0.1  # how often the wait between samples checks the target and a stop request
TOP_N = 5     # evidence entries shown per kind


@dataclass
class Observation:
    snapshots: list[Snapshot]
    times: list[float]           # time.monotonic() of each snapshot
    interrupted: bool = False    # Ctrl-C / SIGTERM mid-window
    target_exited: bool = False  # the target was gone before the window's end
    names: NameBook | None = None  # the DNS answers the target received (kept across windows)

    @property
    def seconds(self) -> float:
        return self.times[-1] - self.times[0]


@dataclass
class Result:
    score: int
    verdict: str
    window_s: float
    samples: int
    target: str
    signals: list[score.Signal]
    evidence: dict[str, list[dict[str, object]]]
    notes: list[str] = field(default_factory=list)
    partial: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"score": self.score, "verdict": self.verdict, "window_s": round(self.window_s, 3),
                "samples": self.samples, "target": self.target, "partial": self.partial,
                "notes": self.notes, "signals": [s.as_dict() for s in self.signals],
                "evidence": self.evidence}


class CounterMaps:
    """The maps detect reads, from a loaded or a pinned tracer, and its lease on the counters
    that work only while a detect run observes (file bytes, DNS answers)."""

    def __init__(self, processes: Callable[[], dict[int, ProcessCounts]], endpoints: MapFd,
                 files_written: MapFd, losses: MapFd, detect: MapFd,
                 dns_answers: MapFd) -> None:
        self.processes, self.endpoints, self.files_written = processes, endpoints, files_written
        self.losses = losses  # the tracer's "counters" map
        self.lease = Lease(detect)
        self.dns = DnsRing(detect, dns_answers)
        self.names = NameBook()

    def tick(self) -> None:
        """Every STEP_S while observing: keep the lease, take in the new DNS answers."""
        self.lease.renew()
        self.dns.read(self.names)

    def release(self) -> None:
        self.lease.release()

    def snapshot(self) -> Snapshot:
        self.tick()  # the lease is held before the first snapshot's counters are read
        evidence_full, pid_stats_full = counters.read_losses(self.losses)
        return Snapshot(procs=counters.read_procs(self.processes),
                        endpoints=counters.read_endpoints(self.endpoints),
                        files=counters.read_files(self.files_written),
                        evidence_full=evidence_full, pid_stats_full=pid_stats_full)


def observe(maps: CounterMaps, samples: int, interval: float,
            alive: Callable[[], bool] | None = None,
            stop: Callable[[], bool] = lambda: False,
            progress: Callable[[int, float], None] | None = None,
            after: Observation | None = None) -> Observation:
    """A snapshot now and one after each of ``samples`` intervals; stops early (and says so)
    when the target is gone or a stop is requested. ``after``: the window before this one
    (--watch): this one starts at its last snapshot, so nothing falls between two windows."""
    if after is not None:
        obs = Observation([after.snapshots[-1]], [after.times[-1]], names=maps.names)
    else:
        obs = Observation([maps.snapshot()], [time.monotonic()], names=maps.names)
    for k in range(samples):
        due = obs.times[0] + (k + 1) * interval
        while True:
            now = time.monotonic()
            if progress:
                progress(k, now - obs.times[0])
            if now >= due:
                break
            if stop():
                obs.interrupted = True
                break
            if alive is not None and not alive():
                obs.target_exited = True
                break
            maps.tick()
            time.sleep(min(STEP_S, due - now))
        obs.snapshots.append(maps.snapshot())
        obs.times.append(time.monotonic())
        if obs.interrupted or obs.target_exited:
            break
    return obs


def window_of(obs: Observation, pids: set[int] | None = None,
              sids: set[int] | None = None) -> tuple[score.Window, dict[str, object]]:
    """The totals over the whole window and the per-sample activity (syscalls per second in
    each interval) of the selected processes, and the evidence."""
    whole = counters.delta(obs.snapshots[0], obs.snapshots[-1], pids, sids, obs.names)
    totals = whole["totals"]
    assert isinstance(totals, dict)
    activity = []
    for i in range(1, len(obs.snapshots)):
        d = counters.delta(obs.snapshots[i - 1], obs.snapshots[i], pids, sids)["totals"]
        dt = obs.times[i] - obs.times[i - 1]
        if dt > STEP_S / 2:  # a sliver cut short by an exit or a stop says nothing of a rate
            activity.append(round(d.get("count", 0) / dt))  # type: ignore[union-attr]
    w = score.Window(seconds=obs.seconds, samples=len(obs.snapshots) - 1,
                     syscalls=totals.get("count", 0), activity=activity,
                     **{f: totals.get(f, 0) for f in counters.PID_FIELDS
                        if f not in ("count",)})
    return w, whole


def evidence_of(whole: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    def top(key: str, unit: str, label: str) -> list[dict[str, object]]:
        c = whole[key]
        assert isinstance(c, Counter)
        return [{label: name, unit: n} for name, n in c.most_common(TOP_N)]

    names = whole["endpoint_names"]
    assert isinstance(names, dict)
    endpoints = top("endpoints", "connects", "endpoint")
    for e in endpoints:
        e["name"] = names.get(e["endpoint"])
    return {"top_execs": top("execs", "count", "program"),
            "remote_endpoints": endpoints,
            "files_written": top("files", "bytes", "file")}


def result_of(obs: Observation, label: str, pids: set[int] | None = None,
              sids: set[int] | None = None) -> Result:
    w, whole = window_of(obs, pids, sids)
    sigs = score.signals(w)
    total = score.score(sigs)
    notes = []
    if obs.interrupted:
        notes.append(f"interrupted after {w.seconds:.1f} s: a partial score")
    if obs.target_exited:
        notes.append(f"the target exited after {w.seconds:.1f} s: scored what was seen")
    first, last = obs.snapshots[0], obs.snapshots[-1]
    if last.pid_stats_full > first.pid_stats_full:
        notes.append(f"{last.pid_stats_full - first.pid_stats_full} processes were not counted "
                     "(the kernel's per-process table is full; --max-pids): the score is low")
    if last.evidence_full > first.evidence_full:
        notes.append(f"{last.evidence_full - first.evidence_full} endpoints or written files "
                     "were not kept as evidence (its tables are full)")
    book = obs.names
    if book is not None and book.lost:
        notes.append(f"{book.lost} DNS answers were overwritten in the kernel's ring before "
                     "detect read them: their names are missing from the evidence")
    if w.syscalls == 0:
        notes.append("no activity: the target made no system call in the window")
    elif len(w.activity) < 2:
        notes.append("fewer than 2 samples: no burst pattern")
    return Result(score=total, verdict=score.verdict(total), window_s=w.seconds,
                  samples=w.samples, target=label, signals=sigs, evidence=evidence_of(whole),
                  notes=notes, partial=obs.interrupted or obs.target_exited)
