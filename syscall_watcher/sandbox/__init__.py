"""Sandboxed runs: cgroup limits (cgroups.py, limits.py) for `swatch run`."""

import os
from pathlib import Path

# Where each run with a cgroup records it (cgroups.py), so a later swatch can sweep the cgroups
# of a run whose swatch was killed; every command looks here first (cli/sandbox.py).
RUNS_DIR = Path(os.environ.get("SWATCH_RUNS_DIR", "/run/swatch/runs"))
