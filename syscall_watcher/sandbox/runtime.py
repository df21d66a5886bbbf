"""The limits of one `swatch run`, applied to CMD while it is held before exec: oom_score_adj,
the run's cgroup (CMD moved in), OOM kills seen as events, and the clean-up at the end."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from syscall_watcher.errors import SwatchError
from syscall_watcher.sandbox.cgroups import OomCount, RunCgroup
from syscall_watcher.sandbox.limits import Limits


@dataclass
class SandboxReport:
    """What the run's limits did, for the summary (text and JSON)."""

    limits: str  # as read back
    cgroups: list[str]
    memory_limit: str = ""
    oom_kills: int = 0
    leftovers_ended: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ended_by(self, exit_code: int) -> str | None:
        """The exit line's words when CMD itself died by SIGKILL after an OOM kill here."""
        if exit_code == -9 and self.oom_kills:
            return f"killed by the OOM killer: memory limit {self.memory_limit} reached"
        return None

    def as_json(self) -> dict:  # type: ignore[type-arg]
        return {"limits": self.limits, "cgroups": self.cgroups, "oom_kills": self.oom_kills,
                "memory_limit": self.memory_limit or None,
                "leftovers_ended": self.leftovers_ended, "problems": self.problems}


class Sandbox:
    """Use as: ``Sandbox.apply(pid, limits)`` before releasing CMD, ``take()`` while it runs
    (OOM-kill lines, merged into the event stream), ``close()`` on the way out."""

    def __init__(self, limits: Limits, json_lines: bool = False, color: bool = False) -> None:
        self.limits = limits
        self.json = json_lines
        self.color = color
        self.cgroup: RunCgroup | None = None
        self.readback: list[tuple[str, str]] = []
        self._oom: OomCount | None = None
        self._oom_seen = 0
        self.report: SandboxReport | None = None

    @classmethod
    def apply(cls, pid: int, limits: Limits, json_lines: bool = False,
              color: bool = False) -> Sandbox:
        """Limit ``pid`` (held before exec). On failure nothing is left and SwatchError says
        what refused (the caller ends the held child)."""
        box = cls(limits, json_lines, color)
        if limits.oom_score_adj is not None:
            path = f"/proc/{pid}/oom_score_adj"
            try:
                with open(path, "w") as f:
                    f.write(str(limits.oom_score_adj))
                with open(path) as f:
                    box.readback.append(("oom_score_adj", f.read().strip()))
            except OSError as err:
                raise SwatchError(f"cannot set oom_score_adj {limits.oom_score_adj}: "
                                  f"{err.strerror}") from None
        if limits.wants_cgroup:
            box.cgroup = RunCgroup.create(limits)
            try:
                box.cgroup.check()
                box.cgroup.add(pid)
            except BaseException:
                box.cgroup.remove()
                box.cgroup = None
                raise
            box._oom = box.cgroup.oom_counter()
        return box

    def describe(self) -> str:
        """'memory.limit_in_bytes 536870912 · ... · oom_score_adj 900', all read back."""
        pairs = (self.cgroup.readback if self.cgroup else []) + self.readback
        return " · ".join(f"{name} {value}" for name, value in pairs)

    def where(self) -> str:
        if not self.cgroup:
            return ""
        paths = self.cgroup.paths
        version = "v2" if 2 in self.cgroup.versions.values() else "v1"
        return f"cgroup {version} {', '.join(map(str, paths))}"

    def start_line(self, json_line: bool) -> bytes:
        """The limits as read back: a JSON line of type "limits", or a human line."""
        if json_line:
            return (json.dumps({"type": "limits", "time_ns": time.time_ns(), "limits": dict(
                (self.cgroup.readback if self.cgroup else []) + self.readback),
                "cgroups": [str(p) for p in self.cgroup.paths] if self.cgroup else []},
                separators=(",", ":")) + "\n").encode()
        where = f" ({self.where()})" if self.cgroup else ""
        return f"swatch: limits {self.describe()}{where}\n".encode()

    # The lines the Streamer merges in (trace.stream.LineSource): (ktime, line) pairs.
    def take(self, timeout_ms: int = 0) -> list[tuple[int, bytes]]:
        if self._oom is None:
            return []
        now = self._oom.read()
        if now <= self._oom_seen:
            return []
        new, self._oom_seen = now - self._oom_seen, now
        return [(time.monotonic_ns(), self._oom_line(new, now))]

    take_all = take

    def _oom_line(self, new: int, total: int) -> bytes:
        t = time.time()
        cgroup = str(self._oom.path) if self._oom else ""
        if self.json:
            return (json.dumps({"type": "oom_kill", "time_ns": time.time_ns(), "cgroup": cgroup,
                                "memory_limit": self.limits.memory_text,
                                "memory_limit_bytes": self.limits.memory_bytes,
                                "killed": new, "oom_kills": total},
                               separators=(",", ":")) + "\n").encode()
        ts = time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
        word = "\033[1;31mOOM KILL\033[0m" if self.color else "OOM KILL"
        who = "1 process" if new == 1 else f"{new} processes"
        return (f"{ts} {word} memory limit {self.limits.memory_text} reached: the kernel's "
                f"OOM killer ended {who} in {cgroup}\n").encode()

    def close(self) -> SandboxReport:
        """Count the OOM kills, end what CMD left in the cgroups (by pid), remove them."""
        if self.report is not None:
            return self.report
        oom = self._oom.read() if self._oom else 0
        report = SandboxReport(limits=self.describe(),
                               cgroups=[str(p) for p in self.cgroup.paths] if self.cgroup else [],
                               memory_limit=self.limits.memory_text, oom_kills=oom)
        if self.cgroup is not None:
            report.problems = self.cgroup.remove()
            report.leftovers_ended = list(self.cgroup.ended)
        self.report = report
        return report


def limits_summary(report: SandboxReport) -> str:
    """The summary's lines about the limits (after the table)."""
    out = f"swatch: limits {report.limits}\n"
    if report.oom_kills:
        out += (f"swatch: OOM: memory limit {report.memory_limit} reached, "
                f"{report.oom_kills} process{'es' if report.oom_kills != 1 else ''} killed by "
                "the OOM killer\n")
    if report.leftovers_ended:
        out += (f"swatch: ended {len(report.leftovers_ended)} process"
                f"{'es' if len(report.leftovers_ended) != 1 else ''} CMD left in its cgroup: "
                f"{' '.join(map(str, report.leftovers_ended))}\n")
    for p in report.problems:
        out += f"swatch: WARNING: {p}\n"
    return out
