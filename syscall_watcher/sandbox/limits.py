"""What `swatch run --memory/--cpu/--pids/--oom-score-adj` asks for: parsed and checked before
anything is created, so a bad value is one line and leaves nothing behind."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from syscall_watcher.errors import SwatchError

# The kernel's CFS bandwidth period we write (its default); a quota is at least 1 ms.
CPU_PERIOD_US = 100_000
CPU_QUOTA_MIN_US = 1_000
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000  # include/uapi/linux/oom.h
PIDS_MAX = 4_194_304  # PID_MAX_LIMIT on 64-bit

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)(i?B)?", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    """Limits for one run; None: not asked for."""

    memory_bytes: int | None = None
    memory_text: str = ""  # as the user wrote it, for the OOM line ("512M")
    cpu_quota_us: int | None = None  # per CPU_PERIOD_US
    cpu_text: str = ""
    pids_max: int | None = None
    oom_score_adj: int | None = None

    @property
    def wants_cgroup(self) -> bool:
        return any(v is not None for v in (self.memory_bytes, self.cpu_quota_us, self.pids_max))

    @property
    def controllers(self) -> list[str]:
        """The cgroup controllers these limits need, in the order they are set."""
        return [c for c, v in (("memory", self.memory_bytes), ("cpu", self.cpu_quota_us),
                               ("pids", self.pids_max)) if v is not None]


def parse_memory(text: str) -> int:
    """'512M', '1.5G', '1048576', '64MiB' (binary units, as docker and systemd) → bytes."""
    m = _MEMORY.fullmatch(text.strip())
    if not m:
        raise SwatchError(f"--memory {text}: give a size like 512M, 2G or 1048576 (bytes; "
                          "units K, M, G, T)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n < 1 << 20:
        raise SwatchError(f"--memory {text}: at least 1M (a process cannot start in less)")
    if n >= 1 << 62:
        raise SwatchError(f"--memory {text}: too large (the kernel's limit is below 4E)")
    return n


def parse_cpu(text: str, ncpu: int | None = None) -> int:
    """'50%' of one CPU → the quota in µs per CPU_PERIOD_US; range 1% to 100% × CPUs."""
    ncpu = ncpu or os.cpu_count() or 1
    top = 100 * ncpu
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%?", text.strip())
    pct = float(m.group(1)) if m else None
    if pct is None or not 1 <= pct <= top:
        raise SwatchError(f"--cpu {text}: choose 1% to {top}% ({ncpu} CPU"
                          f"{'s' if ncpu != 1 else ''}; 100% is one whole CPU)")
    return max(CPU_QUOTA_MIN_US, round(pct * CPU_PERIOD_US / 100))


def parse_limits(memory: str | None = None, cpu: str | None = None, pids: int | None = None,
                 oom_score_adj: int | None = None, ncpu: int | None = None) -> Limits:
    """Check every value; a SwatchError names the first bad one."""
    memory_bytes = parse_memory(memory) if memory is not None else None
    cpu_quota = parse_cpu(cpu, ncpu) if cpu is not None else None
    if pids is not None and not 1 <= pids <= PIDS_MAX:
        raise SwatchError(f"--pids {pids}: choose 1 to {PIDS_MAX} (CMD itself is one)")
    if oom_score_adj is not None and not OOM_SCORE_ADJ_MIN <= oom_score_adj <= OOM_SCORE_ADJ_MAX:
        raise SwatchError(f"--oom-score-adj {oom_score_adj}: choose {OOM_SCORE_ADJ_MIN} to "
                          f"{OOM_SCORE_ADJ_MAX} (1000: killed first when memory runs out)")
    if oom_score_adj is not None:
        check_oom_score_adj(oom_score_adj)
    return Limits(memory_bytes=memory_bytes, memory_text=(memory or "").strip(),
                  cpu_quota_us=cpu_quota, cpu_text=(cpu or "").strip(), pids_max=pids,
                  oom_score_adj=oom_score_adj)


def check_oom_score_adj(value: int) -> None:
    """Lowering oom_score_adj below our own needs CAP_SYS_RESOURCE: say so before any fork."""
    with open("/proc/self/oom_score_adj") as f:
        ours = int(f.read())
    if value < ours and not _has_cap(24):  # CAP_SYS_RESOURCE
        raise SwatchError(f"--oom-score-adj {value}: below swatch's own ({ours}) needs "
                          "CAP_SYS_RESOURCE, which this process does not have; choose "
                          f"{ours} to {OOM_SCORE_ADJ_MAX}")


def _has_cap(bit: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False
