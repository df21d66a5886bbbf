"""What `make deps` promises, and the helper scripts that must neither install anything nor fail
without saying why (tools/install-deps, tools/vm-run.sh, tests/docker-env.sh, tools/fresh-check).
Run as root; none of these boots a VM or changes the machine."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VM_RUN = ROOT / "tools" / "vm-run.sh"
VM_FAILED = 125


def make_var(name: str) -> list[str]:
    """A variable of the Makefile, as make expands it."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-",
                          "print"], input=f"print:\n\t@echo $({name})\n", cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def one_line_why(stderr: str, *needles: str) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines, "exited non-zero with nothing on stderr"
    for n in needles:
        assert n in lines[-1], f"{n!r} not in the last stderr line: {stderr!r}"


def test_deps_installs_nothing_when_everything_is_there() -> None:
    """`make deps` is run by every `make test`: with everything present it prints nothing and
    runs no apt-get or pip (it would print 'installing ...')."""
    r = subprocess.run(["make", "-s", "deps"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


def test_deps_covers_what_the_vm_runner_and_docker_env_need() -> None:
    """Everything tools/vm-run.sh and tests/docker-env.sh look for is what the Debian packages and
    pip requirements of `make deps` put there."""
    apt = set(make_var("APT_PACKAGES"))
    assert {"qemu-system-x86", "linux-image-amd64", "linux-image-6.12-amd64", "docker.io",
            "busybox-static"} <= apt
    assert any(p.startswith("virtme-ng==") for p in make_var("PIP_PACKAGES"))
    status = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Package}\n", *apt],
                            capture_output=True, text=True).stdout.split("\n")
    assert sorted(ln[3:] for ln in status if ln.startswith("ii ")) == sorted(apt)
    boot = [p.name for p in Path("/boot").glob("vmlinuz-*")]
    assert any(re.fullmatch(r"vmlinuz-6\.1\.0-\d+-amd64", b) for b in boot), boot
    assert any(re.fullmatch(r"vmlinuz-6\.12\.\d+\+deb12-amd64", b) for b in boot), boot
    assert (ROOT / ".venv" / "bin" / "vng").exists()


def test_no_script_or_test_installs_anything() -> None:
    """Only tools/install-deps (run by make deps / bench-deps) installs; the scripts a test run
    uses must not (two of them installing at once fought over the dpkg lock)."""
    apt = re.compile(r"\bapt(-get)?\b[\"',\s]+install")
    pip = re.compile(r"\bpip\b[\"',\s]+install")
    checks = [(f, apt) for f in ROOT.glob("tests/*.py") if f != Path(__file__)]
    checks += [(f, rx) for f in [*ROOT.glob("tests/*.sh"), ROOT / "tools" / "vm-run.sh",
                                 ROOT / "bench" / "run.py"] for rx in (apt, pip)]
    hits = [f"{f.relative_to(ROOT)}:{i}: {ln.strip()}" for f, rx in checks
            for i, ln in enumerate(f.read_text().splitlines(), 1) if rx.search(ln)]
    assert hits == []


def run_without_boot_kernels(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """tools/vm-run.sh in a mount namespace whose /boot is empty, as on a machine whose kernel
    packages are missing (the host's /boot is untouched)."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs tmpfs /boot && exec "$0" bpf-lsm true', str(VM_RUN)],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("kernel,package", [("6.1", "linux-image-amd64"),
                                            ("6.12", "linux-image-6.12-amd64")])
def test_vm_run_without_a_kernel_says_why(kernel: str, package: str) -> None:
    r = run_without_boot_kernels({"VM_KERNEL": kernel})
    assert r.returncode == VM_FAILED, (r.returncode, r.stderr)
    one_line_why(r.stderr, "vm-run:", package, "make deps")


def test_vm_run_without_virtme_ng_says_why(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    os.symlink(ROOT / ".venv" / "bin" / "python", tmp_path / "bin" / "python")
    r = subprocess.run([str(VM_RUN), "bpf-lsm", "true"], cwd=ROOT,
                       env={**os.environ, "VENV": str(tmp_path)}, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == VM_FAILED, (r.returncode, r.stderr)
    one_line_why(r.stderr, "no virtme-ng", "make deps")


@pytest.mark.parametrize("args,needle", [(["bogus", "true"], "unknown mode 'bogus'"),
                                         (["bpf-lsm", "true"], "expected 6.1, 6.12")])
def test_vm_run_bad_input_says_why(args: list[str], needle: str) -> None:
    r = subprocess.run([str(VM_RUN), *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "VM_KERNEL": "5.10"}, timeout=60)
    assert r.returncode == VM_FAILED
    one_line_why(r.stderr, needle)


def test_docker_env_without_docker_says_why_and_installs_nothing(tmp_path: Path) -> None:
    """A PATH with every system command but dockerd: docker-env.sh names `make deps` instead of
    running apt-get (which it did before, in the middle of a test run)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"):
        for p in Path(d).iterdir():
            if p.name != "dockerd" and not (bin_dir / p.name).exists():
                os.symlink(p, bin_dir / p.name)
    r = subprocess.run(["/bin/bash", str(ROOT / "tests" / "docker-env.sh")], cwd=ROOT,
                       env={**os.environ, "PATH": str(bin_dir)}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    one_line_why(r.stderr, "docker-env:", "dockerd not found", "make deps")


@pytest.mark.parametrize("args,needle", [(["--steps", "deps bogus"], "unknown step 'bogus'"),
                                         (["--rev", "no-such-rev-xyz"], "no such revision"),
                                         (["--frob"], "unknown argument '--frob'")])
def test_fresh_check_bad_input_says_why(args: list[str], needle: str) -> None:
    r = subprocess.run([str(ROOT / "tools" / "fresh-check"), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    one_line_why(r.stderr, "fresh-check: error:", needle)


def test_install_deps_bad_input_says_why() -> None:
    r = subprocess.run([str(ROOT / "tools" / "install-deps"), "--apt"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    one_line_why(r.stderr, "install-deps: error:", "--apt needs a value")
