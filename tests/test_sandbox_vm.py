"""The run limits on a cgroup-v2-only machine: a VM booted with Debian 12's stock 6.1 kernel has
cgroup v2 alone at /sys/fs/cgroup (the controllers in cgroup.controllers, enabled through
cgroup.subtree_control), the layout most distros have and this host has not. The VM boots once
and runs every test of tests/test_sandbox_limits.py. SWATCH_SKIP_VM=1 skips it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VM_FAILED = 125


@pytest.mark.skipif(os.environ.get("SWATCH_IN_VM") == "1", reason="already inside the VM")
@pytest.mark.skipif(os.environ.get("SWATCH_SKIP_VM") == "1", reason="SWATCH_SKIP_VM=1")
def test_limits_on_cgroup_v2_only_in_a_vm() -> None:
    inner = (f"stat -fc 'cgroup fs: %T' /sys/fs/cgroup && "
             f"echo controllers: $(cat /sys/fs/cgroup/cgroup.controllers) && "
             f"SWATCH_IN_VM=1 PYTHONDONTWRITEBYTECODE=1 {ROOT}/.venv/bin/python -m pytest "
             "-p no:cacheprovider -q tests/test_sandbox_limits.py")
    env = {**os.environ, "VM_KERNEL": "6.1", "VM_TIMEOUT": os.environ.get("VM_TIMEOUT", "1500")}
    proc = subprocess.run([str(ROOT / "tools" / "vm-run.sh"), "no-bpf-lsm", "sh", "-c", inner],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    sys.stdout.write(out)
    assert proc.returncode != VM_FAILED, f"the VM failed to run:\n{out[-2000:]}"
    assert "cgroup fs: cgroup2fs" in out  # v2 alone at /sys/fs/cgroup
    assert "memory" in out.split("controllers:", 1)[1].split("\n", 1)[0]
    assert proc.returncode == 0, f"the limits tests failed in the VM:\n{out[-4000:]}"
    assert " passed" in out and " failed" not in out, out[-2000:]
