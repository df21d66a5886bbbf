"""Tier planning: probe what the kernel accepts and choose, per operation, the tier that holds it.

Tiers, strongest first (architecture.md, decision 7):

* ``lsm``      BPF LSM programs, when ``bpf`` is an active LSM — blocked before
* ``fmod_ret`` the same hooks as fmod_ret on the ``security_*`` functions — blocked before
* ``cgroup``   cgroup-BPF socket hooks at the cgroup v2 root (connect, UDP sendmsg, bind, socket
               creation; IPv4/IPv6 only) — blocked before
* ``reactive`` ``bpf_send_signal(SIGKILL)`` from ``sys_enter`` — killed after: the call may
               still complete

Here: which hooks, cgroup programs and syscalls hold each operation, what each tier cannot see
(``OpPlan.describe``, which policy-load prints), the probe, and which programs a plan loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from syscall_watcher.data import built_object
from syscall_watcher.errors import BpfError, SwatchError
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import BpfObject, lib
from syscall_watcher.policy.language import OPERATIONS, Policy

# Numbers from bpf/policy.h through cffi, never copied (tests/test_constants.py ties the names).
TIER_NAMES = {lib.SWP_TIER_LSM: "lsm", lib.SWP_TIER_FMOD_RET: "fmod_ret",
              lib.SWP_TIER_CGROUP: "cgroup", lib.SWP_TIER_REACTIVE: "reactive"}
LSM_FLAG_PATH = "/sys/kernel/security/lsm"

# op → the LSM hooks that hold it (program swp_lsm_<hook> / swp_fmr_<hook>).
HOOKS: dict[str, tuple[str, ...]] = {
    "exec": ("bprm_check",),
    "file_open": ("file_open",),
    "connect": ("socket_connect", "socket_sendmsg"),
    "socket": ("socket_create",),
    "bind": ("socket_bind",),
    "listen": ("socket_listen",),
    "kill": ("task_kill",),
    "unlink": ("path_unlink",),
    "rename": ("path_rename",),
    "mkdir": ("path_mkdir",),
    "rmdir": ("path_rmdir",),
    "read": ("file_permission",),
    "write": ("file_permission", "file_open", "path_mknod", "path_symlink", "path_link",
              "path_truncate", "path_rename", "mmap_file", "file_mprotect"),
    "fork": ("task_alloc",),
}
LSM_HOOK_NAME = {"bprm_check": "bprm_check_security"}

# op → cgroup-BPF programs (IPv4/IPv6 sockets only).
CGROUP_PROGS: dict[str, tuple[str, ...]] = {
    "connect": ("swp_connect4", "swp_connect6", "swp_sendmsg4", "swp_sendmsg6"),
    "bind": ("swp_bind4", "swp_bind6"),
    "socket": ("swp_sock_create",),
}
CGROUP_DESC = {
    "connect": "cgroup connect4/connect6, UDP sendmsg4/sendmsg6",
    "bind": "cgroup bind4/bind6",
    "socket": "cgroup sock_create",
}

_N = lib.SWP_NONE


@dataclass(frozen=True)
class Sys:
    """How the reactive tier reads one syscall."""

    name: str
    path: int = _N
    path2: int = _N
    fd: int = _N
    flags: int = 0


# struct swp_syscall.flags: bpf/policy.h's SWP_R_*, through cffi
_UNLINKAT, _KILL, _EMPTY_FD = lib.SWP_R_UNLINKAT, lib.SWP_R_KILL, lib.SWP_R_EMPTY_PATH_FD
_OPEN_W, _OPENAT2 = lib.SWP_R_OPEN_WRITE, lib.SWP_R_OPENAT2
_ANCESTOR, _MMAP, _MPROTECT, _AT = (lib.SWP_R_ANCESTOR, lib.SWP_R_MMAP, lib.SWP_R_MPROTECT,
                                    lib.SWP_R_AT)
_SENDTO, _SENDMSG, _SENDMMSG = lib.SWP_R_SENDTO, lib.SWP_R_SENDMSG, lib.SWP_R_SENDMMSG
_RENAMES = (Sys("rename", path=0, path2=1, flags=_ANCESTOR),
            Sys("renameat", path=1, path2=3, flags=_ANCESTOR | _AT),
            Sys("renameat2", path=1, path2=3, flags=_ANCESTOR | _AT))
# op → the syscalls the reactive tier watches for it. A path is joined to the root, the cwd or
# the dirfd (the argument before it, _AT) and normalised in the kernel before it is compared.
REACTIVE_SYSCALLS: dict[str, tuple[Sys, ...]] = {
    "exec": (Sys("execve", path=0), Sys("execveat", path=1, fd=0, flags=_EMPTY_FD | _AT)),
    "file_open": (Sys("open", path=0), Sys("openat", path=1, flags=_AT),
                  Sys("openat2", path=1, flags=_AT), Sys("creat", path=0),
                  Sys("open_by_handle_at")),
    # datagrams sent to an explicit address are connects in all but name
    "connect": (Sys("connect"), Sys("sendto", flags=_SENDTO), Sys("sendmsg", flags=_SENDMSG),
                Sys("sendmmsg", flags=_SENDMMSG)),
    "socket": (Sys("socket"), Sys("socketpair")),
    "bind": (Sys("bind"),),
    "listen": (Sys("listen"),),
    "kill": (Sys("kill", path=0, fd=1, flags=_KILL), Sys("tkill", path=0, fd=1, flags=_KILL),
             Sys("tgkill", path=0, fd=2, flags=_KILL),
             Sys("rt_sigqueueinfo", path=0, fd=1, flags=_KILL),
             Sys("rt_tgsigqueueinfo", path=0, fd=2, flags=_KILL),
             Sys("pidfd_send_signal", fd=1, flags=_KILL)),
    "unlink": (Sys("unlink", path=0), Sys("unlinkat", path=1, flags=_UNLINKAT | _AT)),
    "rmdir": (Sys("rmdir", path=0), Sys("unlinkat", path=1, flags=_UNLINKAT | _AT)),
    # the old name also matches a directory above a protected path (it would move it)
    "rename": _RENAMES,
    "mkdir": (Sys("mkdir", path=0), Sys("mkdirat", path=1, flags=_AT)),
    "read": tuple(Sys(n, fd=0) for n in ("read", "readv", "pread64", "preadv", "preadv2")),
    # Everything that changes a file's content or its name: through an fd (for
    # copy_file_range, sendfile, splice: the output fd), a shared writable mapping, an open
    # that writes, creates or truncates (fd = the flags argument), a new name (link, symlink,
    # mknod) in or for a protected path, and renames (rename-over, out of, into, or of a
    # directory above a protected path).
    "write": tuple(Sys(n, fd=0) for n in ("write", "writev", "pwrite64", "pwritev", "pwritev2",
                                           "ftruncate", "fallocate")) + (
        Sys("copy_file_range", fd=2), Sys("sendfile", fd=0), Sys("splice", fd=2),
        Sys("mmap", fd=4, flags=_MMAP), Sys("mprotect", flags=_MPROTECT),
        Sys("truncate", path=0), Sys("open", path=0, fd=1, flags=_OPEN_W),
        Sys("openat", path=1, fd=2, flags=_OPEN_W | _AT),
        Sys("openat2", path=1, fd=2, flags=_OPEN_W | _OPENAT2 | _AT),
        Sys("creat", path=0, flags=_OPEN_W),
        Sys("link", path=0, path2=1), Sys("linkat", path=1, path2=3, fd=0,
                                           flags=_EMPTY_FD | _AT),
        Sys("symlink", path=1), Sys("symlinkat", path=2, flags=_AT),
        Sys("mknod", path=0), Sys("mknodat", path=1, flags=_AT)) + _RENAMES,
    "fork": (Sys("fork"), Sys("vfork"), Sys("clone"), Sys("clone3")),
}
# What each tier cannot see, per operation (policy-load prints it; docs/policy.md's bypass
# table lists each case with the outcome the tests measure).
HOOK_GAPS = {
    "write": "writes through a shared mapping made before the load",
    "read": "reads through a memory mapping",
}
# op → the io_uring operations whose submission the reactive tier checks for it (bpf/policy.bpf.c
# check_uring_req; the submission tracepoint programs load where the kernel has them).
REACTIVE_URING: dict[str, tuple[str, ...]] = {
    "file_open": ("openat", "openat2"),
    "write": ("openat", "openat2", "write", "writev", "write_fixed", "writev_fixed",
              "renameat"),
    "unlink": ("unlinkat",), "rmdir": ("unlinkat",), "mkdir": ("mkdirat",),
    "rename": ("renameat",), "connect": ("connect",),
}
URING_PROGS = ("swp_uring_submit_req", "swp_uring_submit_sqe")
REACTIVE_GAPS = {
    "exec": "", "file_open": "",
    "read": "reads through a memory mapping, the input of sendfile/splice/copy_file_range, "
            "io_uring",
    "write": "writes through a shared mapping made before the load, io_uring's other writes "
             "(splice, ftruncate, fallocate, linkat, symlinkat, writes to registered files)",
}


def uring_submit_prog() -> str | None:
    """The reactive tier's io_uring submission program this kernel can take, if any."""
    return next((p for p, tp in zip(URING_PROGS, ("io_uring_submit_req", "io_uring_submit_sqe"))
                 if libbpf.kernel_has_tracepoint(tp)), None)
_PATH_NOTE = ("path rules compare the path joined to the cwd or dirfd and normalised (//, ., ..) "
              "in the kernel, with no symlink followed (a symlink or /proc/self/cwd in the path "
              "is not covered); a path it cannot read or longer than 255 bytes is denied; "
              "a racing thread can change the argument after the check")


def bpf_object_path() -> Path:
    """The enforcer's object: the probe loads parts of it, the enforcer all it needs."""
    return built_object("policy.bpf.o", "SWATCH_POLICY_BPF_OBJ")


@dataclass
class OpPlan:
    """Which tier holds one operation, and how that reads to a user."""

    op: str
    tier: str  # lsm | fmod_ret | cgroup | reactive
    reactive_part: bool  # the reactive tier holds the op, or part of it (other families)

    @property
    def preventive(self) -> bool:
        return not self.reactive_part

    def describe(self, policy: Policy | None = None) -> str:
        has_paths = policy is not None and any(self.op in r.ops for r in policy.protects)
        if self.tier in ("lsm", "fmod_ret"):
            if self.tier == "lsm":
                hooks = ", ".join(LSM_HOOK_NAME.get(h, h) for h in HOOKS[self.op])
                text = f"blocked before (BPF LSM {hooks}"
            else:
                text = "blocked before (fmod_ret " + ", ".join(
                    f"security_{h}" for h in HOOKS[self.op])
            gap = HOOK_GAPS.get(self.op)
            return text + (f"; not covered: {gap})" if gap else ")")
        calls = "/".join(dict.fromkeys(s.name for s in REACTIVE_SYSCALLS[self.op]
                                       if s.name not in ("open_by_handle_at",)))
        if self.op in REACTIVE_URING and uring_submit_prog():
            calls += " and io_uring submission of " + "/".join(REACTIVE_URING[self.op])
        if self.tier == "cgroup":
            if self.op == "listen":
                return f"killed after (reactive SIGKILL at sys_enter {calls})"
            return (f"blocked before for IPv4/IPv6 ({CGROUP_DESC[self.op]}); killed after for "
                    f"other families (reactive SIGKILL at sys_enter {calls}; a racing thread "
                    "can change the address after the check)")
        notes = []
        if has_paths and any(s.path != _N for s in REACTIVE_SYSCALLS[self.op]):
            notes.append(_PATH_NOTE)
        elif has_paths:
            notes.append("a racing thread can change the fd after the check")
        if self.op == "connect":
            notes.append("a racing thread can change the address (sendmsg's msg_name) after "
                         "the check")
        gap = REACTIVE_GAPS.get(self.op)
        if gap and (has_paths or self.op in ("file_open", "write", "read")):
            notes.append(f"not covered: {gap}")
        tail = "".join(f"; {n}" for n in notes)
        return f"killed after (reactive SIGKILL at sys_enter {calls}{tail})"


def policy_ops(policy: Policy) -> list[str]:
    used = set(policy.blocks)
    for rule in policy.protects:
        used |= rule.ops
    return [op for op in OPERATIONS if op in used]


def bpf_lsm_active() -> bool:
    """Is `bpf` in the active LSM list? (lsm/* programs attach but never run otherwise.)"""
    path = Path(LSM_FLAG_PATH)
    if not path.exists() and Path("/sys/kernel/security").is_dir():
        os.system("mount -t securityfs securityfs /sys/kernel/security 2>/dev/null")
    try:
        return "bpf" in path.read_text().strip().split(",")
    except OSError:
        return False


def prog_names(tier: str, ops: list[str]) -> list[str]:
    """The lsm or fmod_ret programs that hold these operations."""
    prefix = "swp_lsm_" if tier == "lsm" else "swp_fmr_"
    return sorted({prefix + h for op in ops for h in HOOKS[op]})


def _try_load(progs: list[str]) -> bool:
    """Can the kernel load these programs (plus nothing else)? Leaves nothing loaded."""
    obj = BpfObject(bpf_object_path())
    try:
        for name, prog in obj.programs.items():
            prog.set_autoload(name in progs)
        obj.set_rodata(libbpf.new("struct swp_config *", {"mode": lib.SW_TARGET_PID}))
        obj.set_max_entries("denials", 4096)
        obj.load()
        return True
    except BpfError:
        return False
    finally:
        obj.close()


def plan(policy: Policy, forced: str | None = None, thorough: bool = False) -> list[OpPlan]:
    """Probe the kernel and choose a tier per operation (strongest it accepts).

    A tier is probed with one small program; if the kernel takes it, every operation is given
    to that tier, and ``enforcer.load_pinned`` falls back to ``thorough`` (one probe per
    operation) only if the real load then fails. ``forced`` (tests, env SWATCH_POLICY_TIER)
    caps the choice: 'fmod_ret' skips the LSM tier, 'cgroup' both hook tiers, 'reactive'
    cgroup-BPF too.
    """
    forced = forced or os.environ.get("SWATCH_POLICY_TIER") or None
    order = ["lsm", "fmod_ret", "cgroup", "reactive"]
    if forced is not None and forced not in order:
        raise SwatchError(f"tier {forced!r}: choose one of {', '.join(order)}")
    start = order.index(forced) if forced else 0
    todo = policy_ops(policy)
    chosen: dict[str, OpPlan] = {}
    for tier in ("lsm", "fmod_ret"):
        if order.index(tier) < start or not todo:
            continue
        if tier == "lsm" and not bpf_lsm_active():
            continue
        if not _try_load(prog_names(tier, ["fork"])):  # task_alloc: the smallest program
            continue
        ok = [op for op in todo if _try_load(prog_names(tier, [op]))] if thorough else todo
        for op in ok:
            chosen[op] = OpPlan(op, tier, reactive_part=False)
        todo = [op for op in todo if op not in chosen]
    for op in todo:
        if op in CGROUP_PROGS and start <= order.index("cgroup"):
            chosen[op] = OpPlan(op, "cgroup", reactive_part=True)
        else:
            chosen[op] = OpPlan(op, "reactive", reactive_part=True)
    return [chosen[op] for op in policy_ops(policy)]


def check_preventive(plans: list[OpPlan], required: bool) -> None:
    """--require-preventive: refuse a plan that leaves any operation to the reactive tier."""
    weak = [p.op for p in plans if not p.preventive]
    if required and weak:
        raise SwatchError(
            f"--require-preventive: on this kernel {', '.join(weak)} would be held (wholly or "
            "for some socket families) only reactively, by SIGKILL after the call; nothing "
            "was loaded")


# Programs that keep the enforcer's "targets" map in step with a pid target's process tree.
TRACKING_PROGS = ("swp_fork", "swp_exit")


def programs_for(plans: list[OpPlan], target_mode: str) -> tuple[set[str], list[str]]:
    """What a plan loads: every program (autoload set), and of those the cgroup-BPF ones
    (attached at the cgroup v2 root rather than to their hook)."""
    wanted = set(TRACKING_PROGS) if target_mode == "pid" else set()
    cgroup_progs: list[str] = []
    for p in plans:
        if p.tier in ("lsm", "fmod_ret"):
            wanted.update(prog_names(p.tier, [p.op]))
        if p.tier == "cgroup" and p.op in CGROUP_PROGS:
            cgroup_progs += CGROUP_PROGS[p.op]
        if p.reactive_part:
            wanted.add("swp_sys_enter")
            if p.op in REACTIVE_URING and (prog := uring_submit_prog()):
                wanted.add(prog)
    wanted.update(cgroup_progs)
    return wanted, cgroup_progs
