"""Sandboxed runs: cgroup limits (cgroups.py, limits.py) for `swatch run`."""
