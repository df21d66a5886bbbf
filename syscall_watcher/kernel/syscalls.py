"""Syscall numbers (from the kernel's own table), their decoding rules and the filter profiles."""

from __future__ import annotations

import errno
import json
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from syscall_watcher.data import DATA_DIR
from syscall_watcher.errors import SwatchError

DATA = DATA_DIR

VERBS = [
    "GENERIC", "OPEN", "READ", "WRITE", "CLOSE", "SOCKET", "CONNECT", "BIND", "LISTEN",
    "ACCEPT", "SPAWN", "DELETE", "RENAME", "MKDIR", "RMDIR", "CHDIR", "STAT", "EXEC",
    "LINK", "KILL", "CHMOD", "DUP",
]  # fmt: skip — the order of SW_VERB_* in _shim.h

_NONE = 255
_SC_ENABLED, _SC_BYTES_IN, _SC_BYTES_OUT, _SC_FD_AT_ENTER = 1, 2, 4, 8
_SC_ADDRLEN_PTR, _SC_EXEC, _SC_CLONE3, _SC_FAILED_ONLY = 16, 32, 64, 128
FMT_RET_FD, FMT_BYTES, FMT_HIDDEN = 1, 2, 4
# struct sw_syscall_info.detect: SW_DT_* (tests/test_detect.py ties them to the header)
_DT_CONNECT, _DT_DNS, _DT_DNS_MSG, _DT_DNS_FROM = 1, 2, 4, 8
_DT_FD_CLOSE, _DT_FD_RESET, _DT_DNS_MMSG, _DT_DNS_IOV = 16, 32, 64, 128
# The receives a DNS answer comes through (glibc: recvfrom on UDP, read on TCP; others
# recvmsg, recvmmsg, readv): while detect runs, what they receive from port 53 goes to the
# DNS ring. The calls that free an fd number keep detect's per-process fd classes true.
_DT_RECEIVES = {"read": _DT_DNS, "recvfrom": _DT_DNS | _DT_DNS_FROM,
                "recvmsg": _DT_DNS | _DT_DNS_MSG, "recvmmsg": _DT_DNS | _DT_DNS_MMSG,
                "readv": _DT_DNS | _DT_DNS_IOV,
                "close": _DT_FD_CLOSE, "dup2": _DT_FD_RESET, "dup3": _DT_FD_RESET,
                "close_range": _DT_FD_RESET, "execve": _DT_FD_RESET,
                "execveat": _DT_FD_RESET}
# data/syscalls.yaml's boolean keys → struct sw_syscall_info.flags bits
_BOOL_FLAGS = {"fd_at_enter": _SC_FD_AT_ENTER, "addrlen_ptr": _SC_ADDRLEN_PTR, "exec": _SC_EXEC,
               "clone3": _SC_CLONE3}


@dataclass(frozen=True)
class SyscallRule:
    """How one syscall is decoded (a row of data/syscalls.yaml)."""

    name: str
    nr: int
    verb: str = "GENERIC"
    path: int = _NONE
    path2: int = _NONE
    fd: int = _NONE
    addr: int = _NONE
    addrlen: int = _NONE
    empty_path_fd: int = _NONE
    flags: int = 0
    fmt_flags: int = 0

    def info(self, enabled: bool, failed_only: bool = False) -> tuple[int, ...]:
        """The ``struct sw_syscall_info`` fields, in order."""
        flags = self.flags | (_SC_ENABLED if enabled else 0)
        flags |= _SC_FAILED_ONLY if failed_only else 0
        detect = _DT_CONNECT if self.verb == "CONNECT" else _DT_RECEIVES.get(self.name, 0)
        return (flags, self.fd, self.path, self.path2, self.addr, self.addrlen,
                self.empty_path_fd, detect)


@cache
def table() -> dict[str, int]:
    """name → number for this architecture, generated from <asm/unistd_64.h> by `make`."""
    path = DATA / "syscall_table.json"
    try:
        return json.loads(path.read_text())["syscalls"]
    except FileNotFoundError:
        raise SwatchError(f"{path} is missing: run `make` to generate it") from None


@cache
def names() -> dict[int, str]:
    return {nr: name for name, nr in table().items()}


def _load_yaml(path: Path) -> Any:
    """A data file (YAML, the source of truth) as parsed: from its JSON twin ``NAME.yaml.json``
    (written by `make` and the package build: tools/data_json.py) when the twin was made from
    this very text (its CRC-32 and length match), which spares PyYAML's import and parse (~12
    ms of every command's start-up); else the YAML itself, through libyaml when PyYAML has it."""
    text = path.read_bytes()
    try:
        twin = json.loads(path.with_name(path.name + ".json").read_bytes())
        if twin["source_crc32"] == zlib.crc32(text) and twin["source_len"] == len(text):
            return twin["data"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no twin, or not one we can read: the YAML
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def rules() -> dict[int, SyscallRule]:
    spec = _load_yaml(DATA / "syscalls.yaml")
    out: dict[int, SyscallRule] = {}
    for name, nr in table().items():
        row = spec.get(name) or {}
        flags = sum(bit for key, bit in _BOOL_FLAGS.items() if row.get(key))
        flags |= {"in": _SC_BYTES_IN, "out": _SC_BYTES_OUT}.get(row.get("bytes", ""), 0)
        fmt = (FMT_BYTES if row.get("bytes") else 0) | (FMT_RET_FD if row.get("ret_fd") else 0)
        out[nr] = SyscallRule(
            name=name,
            nr=nr,
            verb=row.get("verb", "GENERIC"),
            path=row.get("path", _NONE),
            path2=row.get("path2", _NONE),
            fd=row.get("fd", _NONE),
            addr=row.get("addr", _NONE),
            addrlen=row.get("addrlen", _NONE),
            empty_path_fd=row.get("empty_path_fd", _NONE),
            flags=flags,
            fmt_flags=fmt,
        )
    return out


def format_tables() -> tuple[dict[int, tuple[str, int, int]], dict[int, str]]:
    sc = {nr: (r.name, VERBS.index(r.verb), r.fmt_flags) for nr, r in rules().items()}
    return sc, dict(errno.errorcode)


@cache
def _profiles_doc() -> dict:  # type: ignore[type-arg]
    return _load_yaml(DATA / "profiles.yaml")


def profile_names() -> list[str]:
    return list(_profiles_doc()["profiles"])


def profile_description(name: str) -> str:
    return _profiles_doc()["profiles"][name].get("description", "")


def profile_events(name: str) -> frozenset[str] | None:
    """The process records (exec, fork, exit) a profile shows; None: all of them."""
    events = _profiles_doc()["profiles"][name].get("events")
    return None if events is None else frozenset(events)


def groups() -> dict[str, list[str]]:
    """The syscall groups of profiles.yaml (usable as -e %GROUP)."""
    return dict(_profiles_doc()["groups"])


def profile(name: str) -> frozenset[str]:
    """The syscall names a filter profile lets through as events."""
    doc = _profiles_doc()
    prof = doc["profiles"].get(name)
    if prof is None:
        raise SwatchError(
            f"unknown filter profile {name!r}; valid profiles: {', '.join(profile_names())}"
        )
    if prof.get("all"):
        return frozenset(table())
    wanted = set(prof.get("syscalls", []))
    for group in prof.get("groups", []):
        wanted.update(doc["groups"][group])
    # Names this architecture lacks (e.g. open on arm64) are simply absent.
    return frozenset(n for n in wanted if n in table())
