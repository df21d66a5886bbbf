"""swatch detect's score: five signals from a window of kernel counters, 0-100, a verdict.

Pure arithmetic on the window's totals (no kernel here): ``docs/detect.md`` gives each formula,
its thresholds and the calibration data behind them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field

# (upper bound of the band, verdict): 0-20 NOT AN AGENT, 21-45 UNLIKELY, ...
VERDICTS = ((20, "NOT AN AGENT"), (45, "UNLIKELY"), (65, "POSSIBLE"), (85, "LIKELY"),
            (100, "ALMOST CERTAINLY"))
AGENT_THRESHOLD = 66  # LIKELY and above: what the tests call "an agent"


@dataclass(frozen=True)
class Band:
    """A plateau on a log scale: no points at or below ``lo0`` or at or above ``hi0``, all the
    points from ``lo1`` to ``hi1``, straight lines in log(value) between."""

    lo0: float
    lo1: float
    hi1: float
    hi0: float

    def fraction(self, v: float) -> float:
        if v <= self.lo0 or v >= self.hi0:
            return 0.0
        if v < self.lo1:
            return math.log(v / self.lo0) / math.log(self.lo1 / self.lo0)
        if v > self.hi1:
            return math.log(self.hi0 / v) / math.log(self.hi0 / self.hi1)
        return 1.0


# The thresholds (docs/detect.md says why each is where it is).
EXEC_RATE = Band(0.02, 0.2, 3.0, 20.0)          # execs per second
CONNECT_RATIO = Band(0.05, 0.3, 8.0, 50.0)      # TCP connects per exec
FANOUT_RATE = Band(0.02, 0.2, 3.0, 20.0)        # short-lived children per second
CHURN_FLOOR = 4096.0                            # file bytes per second for full churn points
BURST_CV = (0.25, 1.0)                          # no points at or below, all at or above


@dataclass
class Window:
    """What the kernel counted for the target over one observation window."""

    seconds: float
    samples: int
    execs: int = 0
    forks: int = 0
    short_lived: int = 0
    exited: int = 0
    connects_tcp: int = 0
    connects_udp: int = 0
    connects_unix: int = 0
    connects_other: int = 0
    file_bytes_in: int = 0
    file_bytes_out: int = 0
    syscalls: int = 0
    activity: list[int] = field(default_factory=list)  # syscalls in each sample interval


@dataclass
class Signal:
    name: str
    label: str
    value: float | None
    unit: str
    points: int
    max: int

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "label"}


def _points(fraction: float, most: int) -> int:
    return int(round(most * max(0.0, min(1.0, fraction))))


def burst_cv(activity: list[int]) -> float | None:
    """Coefficient of variation (population stdev / mean) of the per-sample activity."""
    if len(activity) < 2 or not any(activity):
        return None
    return statistics.pstdev(activity) / statistics.fmean(activity)


def signals(w: Window) -> list[Signal]:
    secs = max(w.seconds, 1e-9)
    exec_rate = w.execs / secs
    ratio = w.connects_tcp / w.execs if w.execs else None
    fanout = w.short_lived / secs
    rd, wr = w.file_bytes_in, w.file_bytes_out
    balance = min(rd, wr) / max(rd, wr) if max(rd, wr) else 0.0
    volume = min(1.0, (rd + wr) / secs / CHURN_FLOOR)
    cv = burst_cv(w.activity)
    lo, hi = BURST_CV
    return [
        Signal("execve_rate", "Execve Rate", round(exec_rate, 3), "exec/s",
               _points(EXEC_RATE.fraction(exec_rate), 25), 25),
        Signal("connect_execve_ratio", "Connect:Execve Ratio",
               None if ratio is None else round(ratio, 3), "connects/exec",
               _points(CONNECT_RATIO.fraction(ratio) if ratio is not None else 0.0, 25), 25),
        Signal("fork_fanout", "Fork Fan-Out", round(fanout, 3), "short-lived/s",
               _points(FANOUT_RATE.fraction(fanout), 20), 20),
        Signal("rw_churn", "Read-Write Churn", round(balance, 3), "balance",
               _points(balance * volume, 15), 15),
        Signal("burst", "Burst Pattern", None if cv is None else round(cv, 3), "CV",
               _points(0.0 if cv is None else (cv - lo) / (hi - lo), 15), 15),
    ]


def verdict(score: int) -> str:
    for top, name in VERDICTS:
        if score <= top:
            return name
    return VERDICTS[-1][1]


def score(sigs: list[Signal]) -> int:
    return min(100, sum(s.points for s in sigs))
