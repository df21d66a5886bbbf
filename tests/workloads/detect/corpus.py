"""swatch detect's labelled corpus: which workloads are agents, how to start one, how to stop it.

Used by tests/test_detect.py and bench/detect_bench.py. Every workload prints "ready PID" when
its setup is done (PID: the process to observe) and runs until --seconds pass or it is killed;
each is deterministic for a seed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Workload:
    name: str
    agent: bool
    argv: tuple[str, ...]  # {server} {workdir} {seed} {seconds} are filled in

    def command(self, server: str, workdir: Path, seed: int, seconds: float) -> list[str]:
        return [x.format(server=server, workdir=workdir, seed=seed, seconds=int(seconds + 0.999),
                         python=sys.executable, here=HERE) for x in self.argv]


PY = ("{python}",)
COMMON = ("--workdir", "{workdir}", "--seed", "{seed}", "--seconds", "{seconds}")
CORPUS = (
    Workload("coding-agent", True, (*PY, "{here}/agent.py", "--style", "coding",
                                    "--server", "{server}", *COMMON)),
    Workload("shell-agent", True, (*PY, "{here}/agent.py", "--style", "shell",
                                   "--server", "{server}", *COMMON)),
    Workload("toolheavy-agent", True, (*PY, "{here}/agent.py", "--style", "toolheavy",
                                       "--server", "{server}", *COMMON)),
    Workload("c-build", False, (*PY, "{here}/cbuild.py", *COMMON)),
    Workload("web-server", False, (*PY, "{here}/webserver.py", *COMMON)),
    Workload("batch-job", False, (*PY, "{here}/batch.py", *COMMON)),
    Workload("monitor", False, ("sh", "{here}/monitor.sh", "{workdir}", "{seconds}")),
    Workload("pip-git", False, (*PY, "{here}/pipgit.py", *COMMON)),
    Workload("idle-shell", False, (*PY, "{here}/idle_shell.py", "--seconds", "{seconds}")),
)
BY_NAME = {w.name: w for w in CORPUS}


class Running:
    """A started workload (its own session, so it and its children stop together)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"{argv[:3]} did not start: {line!r}")
        self.ready = line.split(None, 1)[1].strip()

    @property
    def pid(self) -> int:
        return int(self.ready)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def start_server() -> Running:
    """The fake chat-completions server; .ready is its URL."""
    return Running([sys.executable, str(HERE / "fake_llm.py")], Path("/tmp"))


def start(w: Workload, server: str, workdir: Path, seed: int = 1,
          seconds: float = 120.0) -> Running:
    return Running(w.command(server, workdir, seed, seconds), workdir)
