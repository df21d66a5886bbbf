"""The wheel installs anywhere: built from a copy of the sources (no `make`, no build/), installed
into a fresh venv, and run from `/` it traces a command and enforces a built-in policy with the
BPF objects, data files and policies it carries.

The fresh venv gets the wheel by pip, offline. Its runtime dependencies (cffi, typer, PyYAML and
theirs) are the project venv's own files, linked in: the same packages pip would fetch, without a
network. The Docker SDK (the `docker` extra) is left out, as a plain `pip install swatch` would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT, new_pin_dir, read_events

pytestmark = pytest.mark.skipif(shutil.which("clang") is None,
                                reason="building the wheel compiles the BPF objects with clang")

PY = sys.executable
# The checkout's own artefacts: the wheel must be built from sources alone.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "__pycache__", "*.so",
                                     "_libbpf.c", "syscall_table.json", "*.yaml.json",
                                     ".pytest_cache",
                                     ".hypothesis", "*.egg-info", "bench", "tests", "docs")


def _runtime_dists(name: str, seen: set[str]) -> None:
    """``name`` and every distribution it needs at run time (no extras), by canonical name."""
    key = canonicalize_name(name)
    if key in seen:
        return
    seen.add(key)
    for spec in metadata.requires(name) or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            _runtime_dists(req.name, seen)


def _link_dist(name: str, site: Path) -> None:
    """Make distribution ``name`` of this venv importable in ``site`` (top-level entries)."""
    dist = metadata.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    base = Path(str(dist.locate_file("")))
    for top in tops:
        if top.endswith(".pth") or top == "__pycache__":
            continue
        dst = site / top
        if not dst.exists():
            dst.symlink_to(base / top)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv holding only the wheel and its runtime dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
    dist = tmp / "dist"
    subprocess.run([PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, capture_output=True, cwd="/")
    (wheel,) = dist.glob("swatch-*.whl")
    venv = tmp / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    subprocess.run([PY, "-m", "pip", "--python", str(vpy), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, cwd="/")
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = zf.read(meta_name).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    needed: set[str] = set()
    for dep in requires:
        req = Requirement(dep)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            _runtime_dists(req.name, needed)
    assert "docker" not in needed, "the Docker SDK must be an extra, not a dependency"
    for name in needed:
        _link_dist(name, site)
    assert sysconfig.get_paths()["purelib"] != str(site)
    return venv / "bin"


def run_installed(bin_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the installed swatch from `/`, with nothing pointing back at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SWATCH_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"
    return subprocess.run([str(bin_dir / "swatch"), *args], capture_output=True, text=True,
                          cwd="/", env=env, timeout=timeout)


def test_wheel_is_the_package_not_the_checkout(installed: Path) -> None:
    code = ("import syscall_watcher, syscall_watcher.trace.tracer as t, "
            "syscall_watcher.policy.enforcer as e, syscall_watcher.policy.language as p, "
            "syscall_watcher.kernel.syscalls as s; "
            "print(syscall_watcher.__file__, t.bpf_object_path(), e.bpf_object_path(), "
            "p.builtin_policies()['no-network'], len(s.table()))")
    out = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout.split()
    pkg = Path(out[0]).parent
    assert pkg.is_relative_to(installed.parent), out
    data = pkg / "data"
    assert Path(out[1]) == data / "bpf" / "watcher.bpf.o"
    assert Path(out[2]) == data / "bpf" / "policy.bpf.o"
    assert Path(out[3]) == data / "policies" / "no-network.policy"
    assert (data / "policies" / "no-network.policy").read_text() == (
        ROOT / "policies" / "no-network.policy").read_text()
    assert int(out[4]) > 300  # the x86-64 table has ~360 syscalls
    for name in ("syscalls.yaml", "profiles.yaml"):  # the twins the build wrote, not stale
        twin = json.loads((data / f"{name}.json").read_text())
        assert twin["data"] == yaml.safe_load((ROOT / "syscall_watcher" / "data" / name)
                                              .read_text())
        assert twin["source_len"] == len((data / name).read_bytes())
    shipped = {p.name for p in (data / "policies").iterdir()}
    assert shipped == {p.name for p in (ROOT / "policies").glob("*.policy")}


def test_installed_wheel_traces_from_root(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    r = run_installed(installed, "run", "--json", "-o", str(out), "--", "/bin/cat",
                      "/etc/hostname")
    assert r.returncode == 0, r.stderr
    events = read_events(out)
    (cat,) = [e for e in events if e["type"] == "exec" and e["filename"] == "/bin/cat"]
    opens = [e for e in events if e["type"] == "syscall" and e["pid"] == cat["pid"]
             and e.get("path") == "/etc/hostname"]
    assert [(o["syscall"], o["op"]) for o in opens] == [("openat", "OPEN")]
    assert opens[0]["ret"] >= 0 and opens[0]["new_fd"] == opens[0]["ret"]
    hostname = Path("/etc/hostname").read_bytes()
    reads = [e for e in events if e["type"] == "syscall" and e["pid"] == cat["pid"]
             and e["syscall"] == "read" and e.get("fd_name") == "/etc/hostname"]
    assert {e["fd"] for e in reads} == {opens[0]["ret"]}
    assert sum(e.get("bytes", 0) for e in reads) == len(hostname)


def test_installed_wheel_enforces_builtin_policy(installed: Path) -> None:
    pin = str(new_pin_dir("pkg"))
    r_fd, w_fd = os.pipe()
    target = subprocess.Popen(
        [PY, "-B", "-c", "import socket, sys\nsys.stdout.write('ready\\n'); sys.stdout.flush()\n"
         "sys.stdin.readline()\ntry:\n    socket.socket()\n    print('allowed')\n"
         "except OSError as e:\n    print(e.errno)\n"],
        stdin=r_fd, stdout=subprocess.PIPE, text=True)
    os.close(r_fd)
    try:
        assert target.stdout is not None and target.stdout.readline() == "ready\n"
        r = run_installed(installed, "policy-load", "--policy", "no-network", "--pid",
                          str(target.pid), "--pin-dir", pin)
        assert r.returncode == 0, r.stderr
        loaded = json.loads(run_installed(installed, "policy-summary", "--json", "--pin-dir",
                                          pin).stdout)
        assert loaded["policy"] == "no-network" and loaded["pids"] == [target.pid], loaded
        os.write(w_fd, b"go\n")
        os.close(w_fd)
        w_fd = -1
        out, _ = target.communicate(timeout=20)
        # cgroup tier: socket() fails with EPERM; reactive tier: the target is killed first.
        assert (target.returncode, out) in ((0, "1\n"), (-signal.SIGKILL, "")), (
            target.returncode, out)
        summary = run_installed(installed, "policy-summary", "--json", "--pin-dir", pin)
        assert summary.returncode == 0, summary.stderr
        info = json.loads(summary.stdout)
        assert info["denials"]["socket"] == 1 and info["total"] == 1, info
    finally:
        if w_fd >= 0:
            os.close(w_fd)
        if target.poll() is None:
            target.kill()
            target.wait()
        unloaded = run_installed(installed, "policy-unload", "--pin-dir", pin)
    assert unloaded.returncode == 0, unloaded.stderr
    assert not Path(pin).exists()


def test_without_docker_extra_container_lookup_names_it(installed: Path) -> None:
    if not os.path.exists("/var/run/docker.sock"):
        pytest.skip("no Docker daemon here: the hint is only for when Docker runs")
    ref = f"swatch-test-absent-{uuid.uuid4().hex[:8]}"
    r = run_installed(installed, "load", "--container", ref, "--pin-dir",
                      str(new_pin_dir("pkg")))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("swatch: error: "), r.stderr
    assert "pip install 'swatch[docker]'" in r.stderr
    # The other back ends still answer: the cgroup scan lists what it finds, with the note.
    listed = run_installed(installed, "containers", "--json")
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    assert "pip install 'swatch[docker]'" in listed.stderr


def test_completion_installs_for_bash(installed: Path, tmp_path: Path) -> None:
    env_home = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    shown = subprocess.run([str(installed / "swatch"), "--show-completion", "bash"],
                           capture_output=True, text=True, cwd="/",
                           env={**os.environ, **env_home})
    assert shown.returncode == 0, shown.stderr
    assert "_SWATCH_COMPLETE" in shown.stdout and "complete " in shown.stdout
    inst = subprocess.run([str(installed / "swatch"), "--install-completion", "bash"],
                          capture_output=True, text=True, cwd="/", env={**os.environ, **env_home})
    assert inst.returncode == 0, inst.stderr
    script = tmp_path / ".bash_completions" / "swatch.sh"
    assert "_SWATCH_COMPLETE" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
    # bash itself completes a command name through the installed script.
    comp = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(swatch poli); COMP_CWORD=1; "
         "_swatch_completion swatch; printf '%s\\n' \"${COMPREPLY[@]}\""],
        capture_output=True, text=True, cwd="/",
        env={**os.environ, **env_home, "PATH": f"{installed}:/usr/bin:/bin"})
    assert comp.returncode == 0, comp.stderr
    assert set(comp.stdout.split()) == {"policy-load", "policy-unload", "policy-summary",
                                        "policy-phase"}
