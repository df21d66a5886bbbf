"""The preventive enforcement tiers, which the host kernel refuses, tested in VMs booted with
Debian 12's two stock kernels, 6.1 (linux-image-amd64) and 6.12 (linux-image-6.12-amd64): per
kernel, one VM with `bpf` in lsm= (BPF LSM tier) and one without (fmod_ret tier). Each VM boots
once and runs every test of tests/test_policy_vm_inner.py; the two VMs of a kernel boot side by
side, the kernels one after the other (at most two VMs at a time). `make deps` installs QEMU,
the kernels and virtme-ng; tools/vm-run.sh installs nothing. SWATCH_SKIP_VM=1 skips them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VM_FAILED = 125
KERNELS = ("6.1", "6.12")
MODES = (("bpf-lsm", "lsm"), ("no-bpf-lsm", "fmod_ret"))


def _inner(mode: str, tier: str) -> list[str]:
    return [str(ROOT / "tools" / "vm-run.sh"), mode, "env", "SWATCH_IN_VM=1",
            f"SWATCH_VM_TIER={tier}", "PYTHONDONTWRITEBYTECODE=1",
            str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "-m", "vm_inner",
            "-p", "no:cacheprovider", "-q", "-x", "tests/test_policy_vm_inner.py"]


@pytest.mark.skipif(os.environ.get("SWATCH_IN_VM") == "1", reason="already inside the VM")
@pytest.mark.skipif(os.environ.get("SWATCH_SKIP_VM") == "1", reason="SWATCH_SKIP_VM=1")
@pytest.mark.parametrize("kernel", KERNELS)
def test_preventive_tiers_in_vms(kernel: str) -> None:
    env = {**os.environ, "VM_KERNEL": kernel,
           "VM_TIMEOUT": os.environ.get("VM_TIMEOUT", "1500"),
           "VM_CPUS": os.environ.get("VM_CPUS", "1")}
    runs = {
        tier: subprocess.Popen(_inner(mode, tier), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
        for mode, tier in MODES
    }
    results = {tier: (p.communicate()[0], p.returncode) for tier, p in runs.items()}
    for tier, (out, rc) in results.items():
        sys.stdout.write(f"===== VM, kernel {kernel}, {tier} tier (exit {rc}) =====\n{out}\n")
    for tier, (out, rc) in results.items():
        where = f"the {tier} VM on kernel {kernel}"
        assert rc != VM_FAILED, f"{where} failed to run:\n{out[-2000:]}"
        assert rc == 0, f"inner tests failed in {where}:\n{out[-4000:]}"
        assert " passed" in out and " skipped" not in out, out[-2000:]
        # vm-run.sh's last line names the kernel it booted: the run is on the one asked for.
        assert f"vmlinuz-{kernel}." in out, f"{where} did not boot a {kernel} kernel:\n{out[-600:]}"
