"""`swatch detect`: choose where the counters come from, observe, score — one window, a window
after another (--watch), or every process tree at once (--all). Knows nothing of typer."""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.errors import SwatchError
from syscall_watcher.targets.target import Target
from syscall_watcher.detect import observe
from syscall_watcher.detect.observe import CounterMaps, Observation, Result

DEFAULT_SAMPLES = 10
DEFAULT_INTERVAL = 3.0
DEFAULT_TOP = 10


def check_window(samples: int, interval: float) -> None:
    if samples < 1:
        raise SwatchError(f"--samples {samples}: take at least 1 sample (2 or more for the "
                          "burst pattern)")
    if not (math.isfinite(interval) and interval > 0):
        raise SwatchError(f"--interval {interval:g}: seconds between samples must be more "
                          "than 0")


@dataclass
class StopFlag:
    """Set by SIGINT/SIGTERM: the window ends at once and its partial score is printed."""

    signum: int = 0

    def __call__(self) -> bool:
        return self.signum != 0


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()

    def handler(signum: int, _frame: object) -> None:
        flag.signum = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class Source:
    """Where one detect run reads its counters, whom they describe, and how to tell that the
    target is gone. ``close`` unloads what detect loaded (never a tracer `swatch load` pinned)."""

    maps: CounterMaps
    label: str
    alive: Callable[[], bool] | None
    close: Callable[[], None]
    child: int = 0                       # -- CMD: the command's pid
    start: Observation | None = None     # -- CMD: the snapshot taken before CMD was released
    pids: set[int] | None = field(default=None)


def _pid_alive(pid: int) -> Callable[[], bool]:
    from syscall_watcher.targets.process import pid_exists

    return lambda: pid_exists(pid)


def from_target(target: Target) -> Source:
    """--pid / --container / --all: a stats-only tracer on the target, for this run."""
    from syscall_watcher.detect.session import load_stats_tracer

    tracer, maps = load_stats_tracer(target)
    alive = None
    if target.mode == "pid":
        def alive() -> bool:
            return bool(tracer.pids())
    elif target.mode == "cgroup" and target.cgroup_path:
        path = target.cgroup_path

        def alive() -> bool:
            return os.path.isdir(path)
    return Source(maps, target.label, alive, tracer.close)


def from_pins(pin_dir: Path) -> Source:
    """No target given: the tracer `swatch load` pinned (its target is detect's)."""
    from syscall_watcher.trace.tracer import TRACER
    from syscall_watcher.detect.session import open_pinned

    if TRACER.status(pin_dir).state == "absent":
        raise SwatchError("nothing to observe: no tracer is loaded and no target was given "
                          "(swatch detect --pid PID | --container NAME | --all | -- CMD, or "
                          "swatch load first)")
    session, maps = open_pinned(pin_dir)
    label = bytes(session.meta().target_label).split(b"\0", 1)[0].decode(errors="replace")
    mode_pid = session.meta().mode == 1
    alive = (lambda: bool(session.pids())) if mode_pid else None
    return Source(maps, label, alive, session.close)


def from_command(argv: list[str]) -> Source:
    """-- CMD: start CMD held before exec, count from its first syscall, then let it go."""
    from syscall_watcher.trace.run import _held_child

    if not argv:
        raise SwatchError("no command given: swatch detect [OPTIONS] -- CMD [ARGS...]")
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if not path or not os.access(path, os.X_OK):
        raise SwatchError(f"command not found or not executable: {argv[0]}")
    pid, release = _held_child(path, argv)
    try:
        src = from_target(Target(mode="pid", pid=pid, label=f"{os.path.basename(argv[0])} "
                                 f"(pid {pid})"))
    except BaseException:
        os.close(release)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    status: list[int] = []

    def alive() -> bool:
        if not status:
            wpid, wstatus = os.waitpid(pid, os.WNOHANG)
            if wpid:
                status.append(wstatus)
        return not status

    src.alive = alive
    src.child = pid
    # The window opens before CMD runs: its exec and first syscall are inside it.
    src.start = Observation([src.maps.snapshot()], [time.monotonic()])
    os.close(release)
    return src


def run_window(src: Source, samples: int, interval: float, stop: StopFlag,
               progress: Callable[[int, float], None] | None = None,
               after: Observation | None = None) -> Observation:
    if after is None and src.start is not None:
        after, src.start = src.start, None
    return observe.observe(src.maps, samples, interval, alive=src.alive, stop=stop,
                           progress=progress, after=after)


def score_target(obs: Observation, label: str) -> Result:
    return observe.result_of(obs, label)


def _by_session(obs: Observation) -> dict[int, Observation]:
    """The observation split by session id, each with only its processes and evidence (one
    pass over the snapshots, however many sessions there are)."""
    from syscall_watcher.detect.counters import Snapshot

    out: dict[int, Observation] = {}
    sids = {p.sid for snap in obs.snapshots for p in snap.procs.values()}
    for sid in sids:
        out[sid] = Observation([], list(obs.times), obs.interrupted, obs.target_exited)
    for snap in obs.snapshots:
        parts = {sid: Snapshot({}, evidence_full=snap.evidence_full,
                               pid_stats_full=snap.pid_stats_full) for sid in sids}
        for pid, p in snap.procs.items():
            parts[p.sid].procs[pid] = p
        for key, n in snap.endpoints.items():
            if key[0] in parts:
                parts[key[0]].endpoints[key] = n
        for fkey, v in snap.files.items():
            if fkey[0] in parts:
                parts[fkey[0]].files[fkey] = v
        for sid, part in parts.items():
            out[sid].snapshots.append(part)
    return out


def score_trees(obs: Observation, top: int) -> list[tuple[int, int, Result]]:
    """--all: one score per session (a session leader and everything under it) that was
    active in the window, best first."""
    last = obs.snapshots[-1]
    ranked = []
    for sid, part in _by_session(obs).items():
        if sid == 0:
            continue  # kernel threads and what the kernel starts: no session
        w, _ = observe.window_of(part)
        if not w.syscalls:
            continue
        procs = part.snapshots[-1].procs
        leader = last.procs.get(sid)
        name = (leader.comm if leader
                else Counter(p.comm for p in procs.values()).most_common(1)[0][0])
        ranked.append((sid, len(procs), observe.result_of(part, f"session {sid} ({name})")))
    ranked.sort(key=lambda t: (-t[2].score, -t[1], t[0]))
    return ranked[:top]
