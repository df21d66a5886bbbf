"""A cgroup per `swatch run`, in whichever layout the machine has.

Per controller (memory, cpu, pids) the hierarchy that holds it: cgroup v2 where the controller
is in the v2 root's ``cgroup.controllers`` (most distros: v2 alone at /sys/fs/cgroup), else the
v1 hierarchy it is mounted on (hybrid hosts: v2 at /sys/fs/cgroup/unified has no controllers).

Where: beside swatch's own cgroup in v2 (a v2 cgroup with processes in it cannot hand
controllers to children; its parent already hands them to swatch's), inside swatch's own cgroup
in v1 (v1 has no such rule) — so a run stays under whatever limits swatch itself runs under.
The directory is ``swatch-run-<swatch pid>``; a record in /run/swatch/runs names every directory
a live run made, so a run whose swatch was killed outright (SIGKILL) is found by the next swatch
command and removed (`swatch cleanup` when it still holds processes).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.errors import SwatchError
from syscall_watcher.sandbox import RUNS_DIR
from syscall_watcher.sandbox.limits import CPU_PERIOD_US, Limits

NAME_PREFIX = "swatch-run-"
EMPTY_TIMEOUT_S = 5.0  # how long ending a cgroup's leftover processes may take


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: v2, or a v1 one with its controllers."""

    version: int
    mount: Path
    controllers: frozenset[str]


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, super options) of every cgroup mount, from mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                point = Path(fields[4].replace("\\040", " "))
                found.append((rfields[0], point, set(rfields[2].split(","))))
    return found


def hierarchies() -> dict[str, Hierarchy]:
    """controller → the hierarchy holding it (v2 first: a controller is in one at a time)."""
    by_ctrl: dict[str, Hierarchy] = {}
    mounts = _mounts()
    for fstype, point, _opts in mounts:
        if fstype == "cgroup2":
            try:
                ctrls = frozenset((point / "cgroup.controllers").read_text().split())
            except OSError:
                continue
            h = Hierarchy(2, point, ctrls)
            for c in ctrls:
                by_ctrl.setdefault(c, h)
    for fstype, point, opts in mounts:
        if fstype == "cgroup":
            ctrls = frozenset(o for o in opts if o in ("memory", "cpu", "pids", "cpuacct"))
            h = Hierarchy(1, point, ctrls)
            for c in ctrls:
                by_ctrl.setdefault(c, h)
    return by_ctrl


def _own_cgroup(h: Hierarchy, pid: int | str = "self") -> str:
    """This process's cgroup path within ``h`` (from /proc/PID/cgroup)."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if h.version == 2 and _hid == "0" and ctrls == "":
                return path
            if h.version == 1 and set(ctrls.split(",")) & h.controllers:
                return path
    return "/"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    return path.read_text().strip()


def _procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): tells a pid from its reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def end_processes(paths: Iterable[Path], timeout: float = EMPTY_TIMEOUT_S) -> list[int]:
    """SIGKILL, by pid, every process in the cgroups until they are empty (a process may fork
    while we kill: read again). Returns the pids ended; SwatchError if they do not empty."""
    paths = list(paths)
    ended: list[int] = []
    end = time.monotonic() + timeout
    while True:
        left = [p for path in paths for p in _procs(path)]
        if not left:
            return ended
        if time.monotonic() > end:
            raise SwatchError(f"cannot empty {paths[0]}: processes {' '.join(map(str, left))} "
                              f"still in it after {timeout:g}s")
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
                if p not in ended:
                    ended.append(p)
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # the killed exit asynchronously; read cgroup.procs again


def remove_dirs(paths: Iterable[Path], timeout: float = EMPTY_TIMEOUT_S) -> list[str]:
    """rmdir each (an emptied v2 cgroup can be EBUSY for a moment while its last task exits:
    try again until the timeout); returns the problems, one line each."""
    problems = []
    for path in paths:
        end = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > end:
                    problems.append(f"cannot remove {path}: {err.strerror}")
                    break
                time.sleep(0.01)
    return problems


@dataclass
class OomCount:
    """The cgroup's OOM-kill counter: memory.events (v2) or memory.oom_control (v1)."""

    path: Path
    version: int

    def read(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0


@dataclass
class RunCgroup:
    """The cgroups of one run (one per hierarchy its limits need), limits set and read back."""

    limits: Limits
    dirs: dict[str, Path] = field(default_factory=dict)  # controller → its cgroup directory
    versions: dict[str, int] = field(default_factory=dict)
    readback: list[tuple[str, str]] = field(default_factory=list)  # (file, value) as read
    record: Path | None = None
    ended: list[int] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    @classmethod
    def create(cls, limits: Limits) -> RunCgroup:
        """Make the run's cgroups, set the limits and read them back. On any failure nothing
        is left: what was made is removed and a SwatchError says which file refused what."""
        run = cls(limits)
        found = hierarchies()
        missing = [c for c in limits.controllers if c not in found]
        if missing:
            raise SwatchError(f"no cgroup hierarchy has the {', '.join(missing)} controller "
                              "(see `mount | grep cgroup`); cannot set "
                              + ", ".join(f"--{'memory' if c == 'memory' else c}"
                                          for c in missing))
        name = f"{NAME_PREFIX}{os.getpid()}"
        plan: dict[str, Path] = {}
        for c in limits.controllers:
            h = found[c]
            own = _own_cgroup(h).lstrip("/")
            if h.version == 2:
                parent = h.mount / os.path.dirname(own) if own else h.mount
            else:
                parent = h.mount / own
            plan[c] = parent / name
            run.versions[c] = h.version
        run._write_record(list(dict.fromkeys(plan.values())))
        try:
            for c, path in plan.items():
                if run.versions[c] == 2:
                    _enable_v2(path.parent, c)
                if not path.is_dir():
                    try:
                        path.mkdir()
                    except OSError as err:
                        raise SwatchError(f"cannot create cgroup {path}: {err.strerror}") from None
                run.dirs[c] = path
            run._set_limits()
        except BaseException:
            run.remove()
            raise
        return run

    def _write_record(self, paths: list[Path]) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        self.record = RUNS_DIR / f"{os.getpid()}.json"
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid()),
                                   "cgroups": [str(p) for p in paths]}) + "\n")
        os.replace(tmp, self.record)

    def _set(self, ctrl: str, name: str, value: str, read_back: bool = True) -> str:
        path = self.dirs[ctrl] / name
        try:
            _write(path, value)
        except OSError as err:
            raise SwatchError(f"the {ctrl} cgroup refused {value!r} in {path}: "
                              f"{err.strerror}") from None
        got = _read(path)
        if read_back:
            self.readback.append((name, got))
        return got

    def _set_limits(self) -> None:
        lim = self.limits
        if lim.memory_bytes is not None:
            if self.versions["memory"] == 2:
                self._set("memory", "memory.max", str(lim.memory_bytes))
                if (self.dirs["memory"] / "memory.swap.max").exists():
                    self._set("memory", "memory.swap.max", "0")  # the limit is RAM + swap
            else:
                self._set("memory", "memory.limit_in_bytes", str(lim.memory_bytes))
                if (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists():
                    self._set("memory", "memory.memsw.limit_in_bytes", str(lim.memory_bytes))
        if lim.cpu_quota_us is not None:
            if self.versions["cpu"] == 2:
                self._set("cpu", "cpu.max", f"{lim.cpu_quota_us} {CPU_PERIOD_US}")
            else:
                self._set("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US), read_back=False)
                q = self._set("cpu", "cpu.cfs_quota_us", str(lim.cpu_quota_us), read_back=False)
                period = _read(self.dirs["cpu"] / "cpu.cfs_period_us")
                self.readback.append(("cpu.cfs_quota_us/cpu.cfs_period_us", f"{q} {period}"))
        if lim.pids_max is not None:
            self._set("pids", "pids.max", str(lim.pids_max))

    def check(self) -> None:
        """Each limit read back must be what was asked (the kernel may round memory to
        pages): a hierarchy that silently took something else is an error."""
        want = {"memory.max": self.limits.memory_bytes,
                "memory.limit_in_bytes": self.limits.memory_bytes,
                "pids.max": self.limits.pids_max}
        for name, got in self.readback:
            w = want.get(name)
            if w is not None and got.isdigit() and abs(int(got) - w) >= os.sysconf("SC_PAGE_SIZE"):
                raise SwatchError(f"{name} reads {got} after writing {w}: the hierarchy did not "
                                  "take the limit")

    def add(self, pid: int) -> None:
        """Move ``pid`` (CMD, still held before exec) into every cgroup of the run."""
        for path in self.paths:
            try:
                _write(path / "cgroup.procs", str(pid))
            except OSError as err:
                raise SwatchError(f"cannot move pid {pid} into {path}: {err.strerror}") from None

    def oom_counter(self) -> OomCount | None:
        if "memory" not in self.dirs:
            return None
        return OomCount(self.dirs["memory"], self.versions["memory"])

    def remove(self) -> list[str]:
        """End what is left in the cgroups (by pid), remove them and the record; the
        problems, one line each (nothing raised: this runs on the way out)."""
        problems: list[str] = []
        try:
            self.ended += [p for p in end_processes(self.paths) if p not in self.ended]
        except SwatchError as err:
            problems.append(str(err))
        problems += remove_dirs(self.paths)
        if not problems and self.record is not None:
            self.record.unlink(missing_ok=True)
            self.record = None
        return problems

    def describe(self) -> str:
        """'memory.max 536870912 · cpu.max 50000 100000 · pids.max 200' as read back."""
        return " · ".join(f"{name} {value}" for name, value in self.readback)


def _enable_v2(parent: Path, ctrl: str) -> None:
    """Make sure ``parent`` hands ``ctrl`` to its children (cgroup.subtree_control). It stays
    on: other cgroups under ``parent`` may rely on it from now on."""
    try:
        enabled = _read(parent / "cgroup.subtree_control").split()
    except OSError as err:
        raise SwatchError(f"cannot read {parent / 'cgroup.subtree_control'}: "
                          f"{err.strerror}") from None
    if ctrl in enabled:
        return
    try:
        _write(parent / "cgroup.subtree_control", f"+{ctrl}")
    except OSError as err:
        why = (" (the cgroup has processes of its own; v2 hands controllers only from cgroups "
               "without)" if err.errno == errno.EBUSY else "")
        raise SwatchError(f"cannot enable the {ctrl} controller in "
                          f"{parent / 'cgroup.subtree_control'}: {err.strerror}{why}") from None


@dataclass
class StaleRun:
    """A run's cgroups whose swatch is gone (killed outright: no clean-up ran)."""

    record: Path
    owner: int
    cgroups: list[Path]

    def processes(self) -> list[int]:
        return [p for c in self.cgroups for p in _procs(c)]


def stale_runs() -> list[StaleRun]:
    """Runs recorded in RUNS_DIR whose swatch (pid and start time) is no longer alive."""
    found = []
    try:
        records = sorted(RUNS_DIR.glob("*.json"))
    except OSError:
        return []
    for rec in records:
        try:
            data = json.loads(rec.read_text())
            owner, start = int(data["pid"]), data.get("start")
            cgroups = [Path(c) for c in data["cgroups"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _start_time(owner) is not None and _start_time(owner) == start:
            continue  # still running
        found.append(StaleRun(rec, owner, [c for c in cgroups
                                           if c.name.startswith(NAME_PREFIX)]))
    return found


def sweep_stale(end_processes_too: bool = False) -> list[str]:
    """Remove the cgroups of dead runs. Those still holding processes are left (their limits
    still hold them) unless ``end_processes_too``: then the processes are ended by pid first.
    Returns one line per thing done or left."""
    lines = []
    for run in stale_runs():
        live = [c for c in run.cgroups if c.is_dir()]
        procs = run.processes()
        if procs and not end_processes_too:
            lines.append(f"run cgroup {live[0]} of a swatch that is gone (pid {run.owner}) "
                         f"still holds {'process' if len(procs) == 1 else 'processes'} "
                         f"{' '.join(map(str, procs[:10]))}; `swatch cleanup` ends "
                         f"{'it' if len(procs) == 1 else 'them'} and removes the cgroup")
            continue
        problems: list[str] = []
        ended: list[int] = []
        if procs:
            try:
                ended = end_processes(live)
            except SwatchError as err:
                problems.append(str(err))
        problems += remove_dirs(live)
        if problems:
            lines += problems
            continue
        run.record.unlink(missing_ok=True)
        if live:
            lines.append(f"removed the run cgroup{'s' if len(live) > 1 else ''} "
                         f"{', '.join(map(str, live))} left by swatch pid {run.owner}"
                         + (f" (ended {' '.join(map(str, ended))})" if ended else ""))
    return lines
