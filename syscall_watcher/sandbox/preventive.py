"""`swatch run --policy P`: the policy language applied to CMD before its exec, with no BPF hook:
Landlock for the filesystem (and TCP bind/connect, signal scoping), seccomp filters generated
by libseccomp for the rest. Per operation, the plan says which mechanism holds it."""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from typing import TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.policy.language import PATH_OPERATIONS, Policy
from syscall_watcher.sandbox import landlock

# Operation → the system calls a seccomp filter makes fail with EPERM.
SECCOMP_SYSCALLS: dict[str, tuple[str, ...]] = {
    "fork": ("fork", "vfork", "clone", "clone3"),  # processes and threads, as task_alloc
    "socket": ("socket", "socketpair"),
    "connect": ("connect",),
    "bind": ("bind",),
    "listen": ("listen",),
}
# io_uring can open sockets, connect, bind and listen without these system calls: a filter
# holding any of them also refuses io_uring_setup.
IO_URING_OPS = frozenset({"socket", "connect", "bind", "listen"})


@dataclass
class OpPlan:
    op: str
    mechanisms: list[str]
    detail: str

    def describe(self) -> str:
        if not self.mechanisms:
            return f"{self.op}: NOT HELD — {self.detail}"
        return f"{self.op}: {' + '.join(self.mechanisms)} — {self.detail}"


@dataclass
class PreventivePlan:
    """What holds each operation of the policy, and the objects that do it."""

    policy: Policy
    ops: list[OpPlan]
    ruleset: landlock.Ruleset | None = None
    seccomp_filter: object = None  # pyseccomp.SyscallFilter
    seccomp_syscalls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def unheld(self) -> list[str]:
        return [p.op for p in self.ops if not p.mechanisms]

    def apply_in_child(self) -> None:
        """In CMD's process, after the gate and before exec."""
        landlock.no_new_privs()
        if self.ruleset is not None:
            self.ruleset.restrict_self()
            self.ruleset.close()
        if self.seccomp_filter is not None:
            self.seccomp_filter.load()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.ruleset is not None:
            self.ruleset.close()


def _elf_interpreter(path: str) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF (the dynamic loader the kernel opens too)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                p_type, _flags, offset, _va, _pa, filesz = struct.unpack("<IIQQQQ", f.read(40))
                if p_type == 3:  # PT_INTERP
                    f.seek(offset)
                    return f.read(filesz).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def exec_chain(path: str) -> list[str]:
    """The files the kernel execs to start ``path``: itself, a #! interpreter, ELF loaders."""
    chain: list[str] = []
    todo = [os.path.realpath(path)]
    while todo and len(chain) < 8:
        p = todo.pop()
        if p in chain:
            continue
        chain.append(p)
        try:
            with open(p, "rb") as f:
                first = f.readline(256)
        except OSError:
            continue
        if first.startswith(b"#!"):
            interp = first[2:].strip().split()
            if interp:
                todo.append(os.path.realpath(interp[0].decode(errors="replace")))
        elif (loader := _elf_interpreter(p)) is not None:
            todo.append(os.path.realpath(loader))
    return chain


def plan(policy: Policy, cmd_path: str, audit_only: bool = False) -> PreventivePlan:
    """Decide, build the Landlock ruleset and the seccomp filter. SwatchError on failure."""
    abi = landlock.abi()
    ops: list[OpPlan] = []
    notes: list[str] = []
    denied: dict[str, int] = {}  # path → Landlock rights denied there
    for op in sorted(policy.operations):
        if op in PATH_OPERATIONS:
            paths = (["/"] if op in policy.blocks else []) + [
                r.path for r in policy.protects if op in r.ops]
            where = "everywhere" if op in policy.blocks else ", ".join(paths)
            if abi < 1:
                ops.append(OpPlan(op, [], "no Landlock on this kernel"))
                continue
            mask = landlock.rights([op], abi)
            for p in paths:
                denied[p] = denied.get(p, 0) | mask
            extra = " (as removal and creation: also holds unlink/mkdir/create there)" \
                if op == "rename" else ""
            if op == "exec" and "/" in paths:
                extra = " (CMD itself and its interpreters excepted)"
            ops.append(OpPlan(op, ["landlock"], f"{', '.join(landlock.names(mask))} "
                              f"denied {where}{extra}"))
        elif op == "kill":
            if abi >= 6:
                ops.append(OpPlan(op, ["landlock"], "signal scope: no signal to a process "
                                  "outside CMD's tree (within it, and to itself, allowed)"))
            else:
                ops.append(OpPlan(op, [], f"needs Landlock ABI 6 (signal scope), kernel has "
                                  f"{abi}"))
        else:
            mech = ["seccomp"]
            detail = f"{'/'.join(SECCOMP_SYSCALLS[op])} fail with EPERM"
            if op in ("connect", "bind") and abi >= 4:
                mech.append("landlock")
                detail += f"; Landlock denies TCP {op} too (io_uring included)"
            if op == "fork":
                detail += " (threads too, as the LSM tier's task_alloc)"
            ops.append(OpPlan(op, mech, detail))
    result = PreventivePlan(policy, ops, notes=notes)
    if audit_only:
        return result
    handled_fs = landlock.rights(set(policy.operations) & PATH_OPERATIONS, abi) if abi else 0
    handled_net = 0
    if abi >= 4:
        handled_net |= (landlock.NET_CONNECT_TCP if "connect" in policy.blocks else 0)
        handled_net |= (landlock.NET_BIND_TCP if "bind" in policy.blocks else 0)
    scoped = landlock.SCOPE_SIGNAL if abi >= 6 and "kill" in policy.blocks else 0
    if handled_fs or handled_net or scoped:
        rules = landlock.grants(handled_fs, denied) if handled_fs else []
        if handled_fs & landlock.FS["execute"]:
            for p in exec_chain(cmd_path):  # CMD's own exec must pass
                rules.append((p, landlock.FS["execute"] | (
                    handled_fs & landlock.FILE_RIGHTS & ~denied.get(p, 0))))
        result.ruleset = landlock.Ruleset.build(handled_fs, handled_net, scoped, rules, abi)
    seccomp_ops = [op for op in sorted(policy.operations) if op in SECCOMP_SYSCALLS]
    if seccomp_ops:
        result.seccomp_filter, result.seccomp_syscalls = _seccomp_filter(seccomp_ops)
        if set(seccomp_ops) & IO_URING_OPS:
            notes.append("io_uring_setup fails with EPERM too (io_uring would bypass seccomp)")
    return result


def _seccomp_filter(ops: list[str]) -> tuple[object, list[str]]:
    """A libseccomp filter: allow all, EPERM for the operations' system calls (clone3: ENOSYS
    only when threads stay allowed — not the case here), logged by the kernel (SECCOMP
    log flag) so that swatch can show each denial."""
    try:
        import pyseccomp as seccomp
    except ImportError:
        try:
            import seccomp  # type: ignore[no-redef]  # python3-seccomp, libseccomp's own
        except ImportError:
            raise SwatchError("--policy needs libseccomp's Python binding: pip install "
                              "pyseccomp (or apt-get install python3-seccomp)") from None
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    names: list[str] = []
    for op in ops:
        names += SECCOMP_SYSCALLS[op]
    if set(ops) & IO_URING_OPS:
        names.append("io_uring_setup")
    for name in names:
        f.add_rule(seccomp.ERRNO(errno.EPERM), name)
    try:
        f.set_attr(seccomp.Attr.CTL_LOG, 1)
    except (AttributeError, OSError, RuntimeError, ValueError):
        pass  # an old libseccomp: denials still hold, but the kernel does not log them
    return f, names


def plan_for_run(policy_arg: str, argv: list[str], require_preventive: bool,
                 notices: TextIO, phase: str | None = None) -> PreventivePlan:
    """`swatch run --policy`: the Landlock ruleset and seccomp filter for CMD, with what holds
    each operation written to ``notices`` before CMD starts. A policy with phases: the rules
    of ``phase`` (default: its first), for the whole run (Landlock and seccomp only tighten)."""
    import shutil

    from syscall_watcher.policy.language import load_policy

    if not argv:
        raise SwatchError("no command given: swatch run [OPTIONS] -- CMD [ARGS...]")
    pol = load_policy(policy_arg)
    in_phase = ""
    if pol.phases or phase is not None:
        name = phase if phase is not None else pol.phases[0].name
        pol = pol.in_phase(name)  # no phases, unknown phase: one line, nothing run
        in_phase = f" (phase {name})"
    path = (shutil.which(argv[0]) if "/" not in argv[0] else argv[0]) or argv[0]
    held = plan(pol, path, audit_only=require_preventive)
    if require_preventive and held.unheld():
        raise SwatchError(f"--require-preventive: policy {pol.name}: "
                          + "; ".join(p.describe() for p in held.ops if not p.mechanisms))
    if require_preventive:
        held = plan(pol, path)
    lines = [f"swatch: policy {pol.name}{in_phase} applied to {argv[0]} before exec:"]
    lines += [f"  {p.describe()}" for p in held.ops]
    lines += [f"  note: {note}" for note in held.notes]
    notices.write("\n".join(lines) + "\n")
    notices.flush()
    return held
