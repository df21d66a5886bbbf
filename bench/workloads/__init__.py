"""The C workloads (this directory's *.c): their sizes, how to run them, how to build them.

Each one times its own loop and prints one `RESULT key=value ...` line (bench_common.h).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from bench.procs import log

SRC = Path(__file__).resolve().parent
ROOT = SRC.parent.parent
BUILD = ROOT / "build" / "bench"
PROGS = ("read_storm", "getppid_storm", "forkexec_storm", "fileio")


class Workload:
    """One C workload and its sizes: full or quick run, fast tracers or slow (ptrace...) ones."""

    def __init__(self, name: str, prog: str, desc: str, fast: Any, slow: Any, quick_fast: Any,
                 quick_slow: Any) -> None:
        self.name, self.prog, self.desc = name, prog, desc
        self.sizes = {(False, False): fast, (False, True): slow,
                      (True, False): quick_fast, (True, True): quick_slow}

    def size(self, quick: bool, slow: bool) -> Any:
        return self.sizes[(quick, slow)]

    def argv(self, quick: bool, slow: bool, tmpdir: Path) -> list[str]:
        return self.argv_n(self.size(quick, slow), tmpdir)

    def argv_n(self, n: Any, tmpdir: Path) -> list[str]:
        if self.name == "fileio":
            files, passes = n
            return [str(BUILD / self.prog), str(tmpdir), str(files), str(passes)]
        return [str(BUILD / self.prog), str(n)]


WORKLOADS = [
    # name, prog, description, full fast / full slow / quick fast / quick slow sizes
    Workload("read", "read_storm", "1-byte read() from /dev/zero", 500_000, 50_000, 50_000, 5_000),
    Workload("getppid", "getppid_storm", "syscall(SYS_getppid)",
             2_000_000, 100_000, 100_000, 5_000),
    Workload("forkexec", "forkexec_storm", "fork + execve /bin/true + waitpid", 1000, 300, 50, 20),
    Workload("fileio", "fileio", "openat + 4 KiB read + close over files in tmpfs",
             (1000, 20), (1000, 3), (200, 5), (200, 1)),
]
BY_NAME = {w.name: w for w in WORKLOADS}


def build(cc: str = "gcc") -> None:
    """Compile the workloads into build/bench/ when missing or older than their source."""
    BUILD.mkdir(parents=True, exist_ok=True)
    hdr = SRC / "bench_common.h"
    for prog in PROGS:
        src, out = SRC / f"{prog}.c", BUILD / prog
        if out.exists() and out.stat().st_mtime >= max(src.stat().st_mtime, hdr.stat().st_mtime):
            continue
        cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(out), str(src)]
        log("build: " + " ".join(cmd))
        subprocess.run(cmd, check=True)
