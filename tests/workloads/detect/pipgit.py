"""Non-agent: pip and git operations, as a developer's or a CI script's: commits, logs, diffs,
branches and status in a local repository; pip installing a local wheel (no index, no
network), listing and showing packages.

    python3 pipgit.py --workdir DIR [--seed 1] [--seconds 120]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ENV = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.invalid",
       "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.invalid",
       "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}


def make_wheel(dest: Path) -> Path:
    """A minimal pure-Python wheel, built by hand (a wheel is a zip with three metadata files)."""
    whl = dest / "corpusdemo-1.0-py3-none-any.whl"
    info = "corpusdemo-1.0.dist-info"
    files = {
        "corpusdemo/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: corpusdemo\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: corpus\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(whl, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", record)
    return whl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    repo = a.workdir / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    whl = make_wheel(a.workdir)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)

    def pip(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "pip", *args], env=ENV, check=True,
                       capture_output=True)

    git("init", "-q")
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + a.seconds
    i = 0
    while time.monotonic() < end:
        (repo / f"f{i % 10}.txt").write_text("".join(f"{rng.random()}\n" for _ in range(50)))
        git("add", "-A")
        git("commit", "-qm", f"change {i}")
        git("log", "--oneline", "-n", "5")
        git("diff", "HEAD~1" if i else "HEAD", "--stat")
        git("status", "--short")
        if i % 3 == 0:
            git("branch", "-f", f"b{i % 5}")
            git("gc", "-q", "--auto")
        if i % 4 == 0:
            pip("install", "-q", "--no-deps", "--target", str(a.workdir / f"site{i % 2}"),
                "--upgrade", str(whl))
        elif i % 4 == 2:
            pip("list")
        i += 1


if __name__ == "__main__":
    main()
