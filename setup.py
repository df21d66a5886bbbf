# setuptools takes cffi_modules and command overrides only through setup(); everything else
# is in pyproject.toml.
#
# The build hook: a wheel (or `pip install .`) carries what `make` would put in build/ — the
# compiled BPF objects, the generated syscall table — and the built-in policies, as package data
# under syscall_watcher/data/{bpf,policies}/. Building needs clang; running the wheel does not.
# Editable installs (`make venv`) skip it: the package then finds make's build/ and policies/.
from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ARCHES = {"x86_64": "x86", "aarch64": "arm64"}


def _bpf_cflags() -> list[str]:
    """The Makefile's BPF_CFLAGS (keep the two in step)."""
    arch = ARCHES.get(platform.machine(), platform.machine())
    return ["-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-D__TARGET_ARCH_{arch}", "-Wall",
            "-Werror", f"-I{ROOT / 'vmlinux' / arch}", f"-I{ROOT / 'bpf'}",
            f"-I{ROOT / 'bpf' / 'include'}"]


def _syscall_header() -> Path:
    """The kernel's syscall numbers, as the Makefile's SYSCALL_HEADER (linux-libc-dev)."""
    if os.environ.get("SWATCH_SYSCALL_HEADER"):
        return Path(os.environ["SWATCH_SYSCALL_HEADER"])
    try:
        triplet = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True,
                                 check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        triplet = f"{platform.machine()}-linux-gnu"
    return Path("/usr/include") / triplet / "asm" / "unistd_64.h"


class BuildPyWithBpf(build_py):
    """build_py, plus the BPF objects, the syscall table and the built-in policies."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's `make` builds into build/; the package looks there
        pkg = Path(self.build_lib) / "syscall_watcher"
        self._compile_bpf(pkg / "data" / "bpf")
        self._syscall_table(pkg / "data" / "syscall_table.json")
        self._data_json(pkg / "data")
        self._policies(pkg / "data" / "policies")

    def _compile_bpf(self, out_dir: Path) -> None:
        clang = shlex.split(os.environ.get("CLANG", "clang"))
        if shutil.which(clang[0]) is None:
            sys.exit(f"swatch build: error: {clang[0]} not found; building swatch needs clang "
                     "(Debian: apt-get install clang llvm libbpf-dev)")
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / "bpf").glob("*.bpf.c")):
            obj = out_dir / src.name.replace(".bpf.c", ".bpf.o")
            self.announce(f"compiling {src.name} -> {obj}", level=2)
            subprocess.run([*clang, *_bpf_cflags(), "-c", str(src), "-o", str(obj)], check=True)

    def _syscall_table(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "tools" / "gen_syscall_table.py"),
                        str(_syscall_header()), str(out)], check=True)

    def _data_json(self, data_dir: Path) -> None:
        """The data files' JSON twins (tools/data_json.py), when this build has PyYAML: without
        them swatch reads the YAML, only slower to start."""
        try:
            import yaml  # noqa: F401
        except ImportError:
            self.announce("PyYAML missing at build time: no JSON twins of the data files", 3)
            return
        for src in sorted((ROOT / "syscall_watcher" / "data").glob("*.yaml")):
            subprocess.run([sys.executable, str(ROOT / "tools" / "data_json.py"), str(src),
                            str(data_dir / (src.name + ".json"))], check=True)

    def _policies(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / "policies").glob("*.policy")):
            shutil.copyfile(src, out_dir / src.name)


setup(
    cffi_modules=["syscall_watcher/kernel/_build.py:ffibuilder"],
    cmdclass={"build_py": BuildPyWithBpf},
)
