"""What the running system must offer before any component loads BPF: root, a kernel with BTF."""

from __future__ import annotations

import os

from syscall_watcher.errors import SwatchError


def require_root() -> None:
    if os.geteuid() != 0:
        raise SwatchError("must run as root: loading BPF programs needs CAP_BPF and CAP_PERFMON")


def require_btf() -> None:
    btf = os.environ.get("SWATCH_BTF_PATH", "/sys/kernel/btf/vmlinux")
    if not os.path.exists(btf):
        raise SwatchError(
            f"this kernel exposes no BTF ({btf} is missing): swatch needs a kernel built "
            "with CONFIG_DEBUG_INFO_BTF=y (5.8 or newer)"
        )
