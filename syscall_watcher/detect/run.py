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


def _closer(maps: CounterMaps, close: Callable[[], None]) -> Callable[[], None]:
    """End detect's lease on the counters (a pinned tracer goes back to its summary-only
    cost), then close what was opened or unload what was loaded."""
    def both() -> None:
        try:
            maps.release()
        finally:
            close()
    return both


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
    return Source(maps, target.label, alive, _closer(maps, tracer.close))


def from_pins(pin_dir: Path) -> Source:
    """No target given: the tracer `swatch load` pinned (its target is detect's)."""
    from syscall_watcher.detect.session import open_pinned
    from syscall_watcher.kernel.libbpf import to_str
    from syscall_watcher.trace.tracer import TRACER

    if TRACER.status(pin_dir).state == "absent":
        raise SwatchError("nothing to observe: no tracer is loaded and no target was given "
                          "(swatch detect --pid PID | --container NAME | --all | -- CMD, or "
                          "swatch load first)")
    session, maps = open_pinned(pin_dir)
    label = to_str(session.meta().target_label)
    mode_pid = session.meta().mode == 1
    alive = (lambda: bool(session.pids())) if mode_pid else None
    return Source(maps, label, alive, _closer(maps, session.close))


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
    src.start = Observation([src.maps.snapshot()], [time.monotonic()], names=src.maps.names)
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


@dataclass(frozen=True)
class Tree:
    """--all: one process tree, a session (its leader and everything in it) or a container
    (every process in its cgroup, whatever their sessions)."""

    kind: str             # "session" or "container"
    session: int          # the session id (kind "session"), else 0
    container_id: str     # the container's short id (kind "container"), else ""
    container_name: str

    def label(self, name: str) -> str:
        if self.kind == "container":
            return f"container {self.container_name} ({self.container_id})"
        return f"session {self.session} ({name})"


def _trees_of(obs: Observation) -> tuple[dict[int, Tree], dict[int, Tree]]:
    """Which tree each process (pid → tree) and each session's evidence (sid → tree) belongs
    to: a process in a container's cgroup (syscall_watcher.targets.containers) belongs to the
    container, any other to its session."""
    from syscall_watcher.targets.containers import container_of_cgroup_id

    procs = {pid: p for snap in obs.snapshots for pid, p in snap.procs.items()}
    in_container = container_of_cgroup_id({p.cgroup_id for p in procs.values()})
    by_pid: dict[int, Tree] = {}
    by_sid: dict[int, Tree] = {}
    for pid, p in procs.items():
        c = in_container.get(p.cgroup_id)
        tree = Tree("container", 0, c[0], c[1]) if c else Tree("session", p.sid, "", "")
        by_pid[pid] = tree
        if c or p.sid not in by_sid:  # a session with a container process: the container's
            by_sid[p.sid] = tree
    return by_pid, by_sid


def _split(obs: Observation) -> dict[Tree, tuple[Observation, set[int]]]:
    """The observation split by tree, each with only its processes and evidence, and its
    sessions (one pass over the snapshots, however many trees there are)."""
    from syscall_watcher.detect.counters import Snapshot

    by_pid, by_sid = _trees_of(obs)
    trees = set(by_pid.values())
    out = {t: (Observation([], list(obs.times), obs.interrupted, obs.target_exited,
                           names=obs.names), set()) for t in trees}
    for sid, t in by_sid.items():
        out[t][1].add(sid)
    for snap in obs.snapshots:
        parts = {t: Snapshot({}, evidence_full=snap.evidence_full,
                             pid_stats_full=snap.pid_stats_full) for t in trees}
        for pid, p in snap.procs.items():
            parts[by_pid[pid]].procs[pid] = p
        for key, n in snap.endpoints.items():
            if key[0] in by_sid:
                parts[by_sid[key[0]]].endpoints[key] = n
        for fkey, v in snap.files.items():
            if fkey[0] in by_sid:
                parts[by_sid[fkey[0]]].files[fkey] = v
        for t, part in parts.items():
            out[t][0].snapshots.append(part)
    return out


def score_trees(obs: Observation, top: int) -> list[tuple[Tree, int, Result]]:
    """--all: one score per process tree (a session, or a container) that was active in the
    window, best first: (tree, processes, result)."""
    last = obs.snapshots[-1]
    ranked = []
    for tree, (part, sids) in _split(obs).items():
        if tree.kind == "session" and tree.session == 0:
            continue  # kernel threads and what the kernel starts: no session
        w, _ = observe.window_of(part, sids=sids)
        if not w.syscalls:
            continue
        procs = {pid: p for snap in part.snapshots for pid, p in snap.procs.items()}
        leader = last.procs.get(tree.session)
        name = (leader.comm if leader
                else Counter(p.comm for p in procs.values()).most_common(1)[0][0])
        ranked.append((tree, len(procs), observe.result_of(part, tree.label(name), sids=sids)))
    ranked.sort(key=lambda t: (-t[2].score, -t[1], t[2].target))
    return ranked[:top]
