"""The preventive enforcement tiers, which the host kernel refuses, tested in VMs booted with
Debian's stock 6.1 kernel: one VM with `bpf` in lsm= (BPF LSM tier), one without (fmod_ret
tier). Each VM boots once and runs every test of tests/test_policy_vm_inner.py; the two boot
side by side. SWATCH_SKIP_VM=1 skips them (e.g. on a machine without QEMU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VM_FAILED = 125


def _inner(mode: str, tier: str) -> list[str]:
    return [str(ROOT / "tools" / "vm-run.sh"), mode, "env", "SWATCH_IN_VM=1",
            f"SWATCH_VM_TIER={tier}", "PYTHONDONTWRITEBYTECODE=1",
            str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "-m", "vm_inner",
            "-p", "no:cacheprovider", "-q", "-x", "tests/test_policy_vm_inner.py"]


@pytest.mark.skipif(os.environ.get("SWATCH_IN_VM") == "1", reason="already inside the VM")
@pytest.mark.skipif(os.environ.get("SWATCH_SKIP_VM") == "1", reason="SWATCH_SKIP_VM=1")
def test_preventive_tiers_in_vms() -> None:
    runs = {
        tier: subprocess.Popen(_inner(mode, tier), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "VM_TIMEOUT": os.environ.get("VM_TIMEOUT",
                                                                               "1500"),
                                    "VM_CPUS": os.environ.get("VM_CPUS", "1")})
        for mode, tier in (("bpf-lsm", "lsm"), ("no-bpf-lsm", "fmod_ret"))
    }
    results = {tier: (p.communicate()[0], p.returncode) for tier, p in runs.items()}
    for tier, (out, rc) in results.items():
        sys.stdout.write(f"===== VM, {tier} tier (exit {rc}) =====\n{out}\n")
    for tier, (out, rc) in results.items():
        assert rc != VM_FAILED, f"the {tier} VM failed to run (see output above)"
        assert rc == 0, f"inner tests failed in the {tier} VM:\n{out[-4000:]}"
        assert " passed" in out and " skipped" not in out, out[-2000:]
