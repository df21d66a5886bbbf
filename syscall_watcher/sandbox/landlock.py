"""Landlock, through its three system calls (ctypes: no maintained Python binding covers the
network rights, the signal scope and the audit flags of ABI 4-7).

Landlock only grants: a ruleset names the rights it handles, and everything handled is denied
except what a rule grants on a file or a directory (and the whole tree beneath it). A policy's
"deny OPS under PATH" is built from grants, see :func:`grants`.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from syscall_watcher.errors import SwatchError

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every arch
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1  # ABI 7: log denials after the exec of CMD too

# include/uapi/linux/landlock.h
FS = {
    "execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3,
    "remove_dir": 1 << 4, "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7,
    "make_reg": 1 << 8, "make_sock": 1 << 9, "make_fifo": 1 << 10, "make_block": 1 << 11,
    "make_sym": 1 << 12, "refer": 1 << 13, "truncate": 1 << 14, "ioctl_dev": 1 << 15,
}
FS_ABI = {"refer": 2, "truncate": 3, "ioctl_dev": 5}  # the ABI that brought each right
FILE_RIGHTS = (FS["execute"] | FS["write_file"] | FS["read_file"] | FS["truncate"]
               | FS["ioctl_dev"])  # the only rights a rule on a non-directory may grant
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_SIGNAL = 1 << 1  # ABI 6: no signals to processes outside the domain

_MAKE = ("make_reg", "make_dir", "make_sym", "make_fifo", "make_sock", "make_char", "make_block")
# A policy operation on a path → the Landlock rights that hold it.
OP_RIGHTS: dict[str, tuple[str, ...]] = {
    "exec": ("execute",),
    "read": ("read_file", "read_dir"),
    "file_open": ("read_file", "write_file", "read_dir", "truncate"),
    "write": ("write_file", "truncate") + tuple(m for m in _MAKE if m != "make_dir"),
    "unlink": ("remove_file",),
    "rmdir": ("remove_dir",),
    "mkdir": ("make_dir",),
    # Landlock has no rename right: a rename is a removal from one directory and a creation in
    # another (REFER across directories), so holding rename also holds those.
    "rename": ("refer", "remove_file", "remove_dir") + _MAKE,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The running kernel's Landlock ABI, 0 when Landlock is not there or not enabled."""
    override = os.environ.get("SWATCH_LANDLOCK_ABI")  # tests: a kernel without Landlock
    if override is not None:
        return int(override)
    v = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                      ctypes.c_uint32(CREATE_RULESET_VERSION))
    return int(v) if v > 0 else 0


def rights(ops: Iterable[str], abi_version: int) -> int:
    mask = 0
    for op in ops:
        for r in OP_RIGHTS.get(op, ()):
            if FS_ABI.get(r, 1) <= abi_version:
                mask |= FS[r]
    return mask


def names(mask: int) -> list[str]:
    return [n for n, b in FS.items() if mask & b]


def grants(handled: int, denied: dict[str, int]) -> list[tuple[str, int]]:
    """Grants that leave ``denied[path]`` (rights) denied on each path and its tree and every
    other handled right allowed: the siblings of each protected path, of each of its
    ancestors, get their grants; the ancestors themselves get none (a grant there would cover
    the protected path). Symbolic links are not followed (their targets are granted as what
    they are). What this cannot cover: entries created later directly in an ancestor of a
    protected path, and creating/removing entries directly in those ancestors."""
    rules = {os.path.normpath(p): m for p, m in denied.items()}
    out: list[tuple[str, int]] = []

    def walk(node: str, denied_above: int) -> None:
        here = denied_above | rules.get(node, 0)
        prefix = node.rstrip("/") + "/"
        below = [p for p in rules if p != node and p.startswith(prefix)]
        if not below:
            try:
                is_dir = stat.S_ISDIR(os.stat(node).st_mode)
            except OSError:
                return
            allowed = handled & ~here & (~0 if is_dir else FILE_RIGHTS)
            if allowed:
                out.append((node, allowed))
            return
        try:
            entries = sorted(os.scandir(node), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.is_symlink():
                continue
            walk(e.path, here)

    walk("/", 0)
    return out


@dataclass
class Ruleset:
    """A Landlock ruleset fd, made in swatch and restricted onto CMD before its exec."""

    fd: int
    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    rules: list[tuple[str, int]]

    @classmethod
    def build(cls, handled_fs: int, handled_net: int, scoped: int,
              rules: list[tuple[str, int]], abi_version: int) -> Ruleset:
        attr = _RulesetAttr(handled_fs, handled_net, scoped)
        size = ctypes.sizeof(_RulesetAttr) if abi_version >= 6 else (
            16 if abi_version >= 4 else 8)
        fd = _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
        if fd < 0:
            err = ctypes.get_errno()
            raise SwatchError(f"landlock_create_ruleset: {os.strerror(err)}")
        ruleset = cls(int(fd), abi_version, handled_fs, handled_net, scoped, [])
        try:
            for path, mask in rules:
                ruleset._add(path, mask)
        except BaseException:
            ruleset.close()
            raise
        return ruleset

    def _add(self, path: str, mask: int) -> None:
        try:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone since we listed it: nothing to grant
        try:
            attr = _PathBeneath(mask, pfd)
            if _libc.syscall(SYS_ADD_RULE, ctypes.c_int(self.fd), ctypes.c_int(RULE_PATH_BENEATH),
                             ctypes.byref(attr), ctypes.c_uint32(0)) < 0:
                err = ctypes.get_errno()
                raise SwatchError(f"landlock_add_rule {path} ({', '.join(names(mask))}): "
                                  f"{os.strerror(err)}")
            self.rules.append((path, mask))
        finally:
            os.close(pfd)

    def restrict_self(self) -> None:
        """In CMD's process, before exec (no_new_privs must be set). Raises OSError."""
        flags = RESTRICT_SELF_LOG_NEW_EXEC_ON if self.abi >= 7 else 0
        if _libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(self.fd), ctypes.c_uint32(flags)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


PR_SET_NO_NEW_PRIVS = 38


def no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
