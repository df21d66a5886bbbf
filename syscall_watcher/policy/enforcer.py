"""The enforcer's lifecycle: probe the tiers, choose one per operation, load, pin, report, unload.

The enforcer (``build/policy.bpf.o``) is independent of the tracer: either can be loaded alone,
or both on the same target. Tiers, strongest first (architecture.md, decision 7):

* ``lsm``      BPF LSM programs, when ``bpf`` is an active LSM — blocked before
* ``fmod_ret`` the same hooks as fmod_ret on the ``security_*`` functions — blocked before
* ``cgroup``   cgroup-BPF socket hooks at the cgroup v2 root (connect, UDP sendmsg, bind, socket
               creation; IPv4/IPv6 only) — blocked before
* ``reactive`` ``bpf_send_signal(SIGKILL)`` from ``sys_enter`` — killed after: the call may
               still complete
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.data import built_object
from syscall_watcher.kernel import libbpf, syscalls
from syscall_watcher.kernel.component import Component, LoadedComponent, PinnedComponent, PinState, pin_dir_from
from syscall_watcher.errors import BpfError, SwatchError
from syscall_watcher.kernel.libbpf import BpfObject, Link, MapSet, lib
from syscall_watcher.policy.language import OPERATIONS, Policy
from syscall_watcher.targets.process import PidFd, add_existing, descendants
from syscall_watcher.trace.tracer import (
    Target,
    max_pids_for,
    require_btf,
    require_root,
)

DEFAULT_PIN_DIR = "/sys/fs/bpf/syscall_watcher_policy"
MAPS = {
    "denials": (None, None),
    "targets": ("uint32_t", "uint8_t"),
    "rules": ("uint32_t", "struct swp_rules"),
    "reactive": ("uint32_t", "struct swp_syscall"),
    "counts": ("uint32_t", "struct swp_counts"),
    "meta": ("uint32_t", "struct swp_meta"),
}
TRACKING_PROGS = ("swp_fork", "swp_exit")
# Numbers from bpf/policy.h through cffi, never copied (tests/test_constants.py ties the names).
TIER_NAMES = {lib.SWP_TIER_LSM: "lsm", lib.SWP_TIER_FMOD_RET: "fmod_ret",
              lib.SWP_TIER_CGROUP: "cgroup", lib.SWP_TIER_REACTIVE: "reactive"}
ACTION_NAMES = {lib.SWP_ACT_BLOCKED: "blocked", lib.SWP_ACT_KILLED: "killed",
                lib.SWP_ACT_AUDIT: "audit"}
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
_OPEN_W, _OPENAT2, _ALSO_W = lib.SWP_R_OPEN_WRITE, lib.SWP_R_OPENAT2, lib.SWP_R_ALSO_WRITE
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
REACTIVE_GAPS = {
    "exec": "", "file_open": "io_uring opens",
    "read": "reads through a memory mapping, the input of sendfile/splice/copy_file_range, "
            "io_uring",
    "write": "writes through a shared mapping made before the load, io_uring",
}
_PATH_NOTE = ("path rules compare the path joined to the cwd or dirfd and normalised (//, ., ..) "
              "in the kernel, with no symlink followed (a symlink or /proc/self/cwd in the path "
              "is not covered); a path it cannot read or longer than 255 bytes is denied; "
              "a racing thread can change the argument after the check")


def reactive_entries(reactive_ops: set[str],
                     cgroup_ops: set[str]) -> dict[int, tuple[int, int, int, int, int]]:
    """syscall nr → (op, flags, path_arg, path2_arg, fd_arg) for the reactive map: one entry
    per syscall, merged across the operations that watch it."""
    table = syscalls.table()
    entries: dict[int, list[int]] = {}
    for op in OPERATIONS:
        if op not in reactive_ops:
            continue
        for sc in REACTIVE_SYSCALLS[op]:
            nr = table.get(sc.name)
            if nr is None or nr >= lib.SW_MAX_SYSCALLS:
                continue
            flags = lib.SWP_R_USED | sc.flags
            if op in cgroup_ops and sc.name == "socket":
                flags |= lib.SWP_R_SKIP_INET_ARG0
            if op in cgroup_ops and sc.name in ("connect", "bind", "sendto", "sendmsg",
                                                "sendmmsg"):
                flags |= lib.SWP_R_SKIP_INET_ADDR
            op_id = OPERATIONS.index("unlink" if sc.name == "unlinkat" else op)
            have = entries.get(nr)
            if have is None:
                entries[nr] = [op_id, flags, sc.path, sc.path2, sc.fd]
            elif sc.flags & _OPEN_W:  # file_open's entry for this open: also a write
                have[1] |= flags
                have[4] = sc.fd
            elif op == "write":  # another op's entry (rename): its paths are writes too
                have[1] |= flags | _ALSO_W
            else:
                have[1] |= flags
    return {nr: (e[0], e[1], e[2], e[3], e[4]) for nr, e in entries.items()}


def pin_dir_default(value: str | Path | None = None) -> Path:
    """--pin-dir's value, else $SWATCH_POLICY_PIN_DIR, else the default; empty is an error."""
    return pin_dir_from(value, "SWATCH_POLICY_PIN_DIR", DEFAULT_PIN_DIR)


def bpf_object_path() -> Path:
    return built_object("policy.bpf.o", "SWATCH_POLICY_BPF_OBJ")


# Every program the enforcer can attach and pin (links/<name>), in the bit order of
# meta.links. APPEND ONLY: pins record the mask, so a reordering would misread them (bump
# SWP_VERSION if one is ever removed). tests/test_pin_safety.py checks it against the object.
LINK_NAMES: tuple[str, ...] = (
    "swp_fork", "swp_exit", "swp_sys_enter",
    "swp_connect4", "swp_connect6", "swp_sendmsg4", "swp_sendmsg6", "swp_bind4", "swp_bind6",
    "swp_sock_create",
    *(f"{prefix}_{hook}" for prefix in ("swp_lsm", "swp_fmr") for hook in (
        "bprm_check", "file_open", "file_permission", "path_link", "path_mkdir", "path_mknod",
        "path_rename", "path_rmdir", "path_symlink", "path_truncate", "path_unlink",
        "socket_bind", "socket_connect", "socket_create", "socket_listen", "socket_sendmsg",
        "task_alloc", "task_kill")),
    # added later: at the end, so the bits above keep their meaning
    *(f"{prefix}_{hook}" for prefix in ("swp_lsm", "swp_fmr")
      for hook in ("mmap_file", "file_mprotect")),
)

POLICY = Component(
    kind="policy", noun="policy pins", maps=tuple(MAPS), links=LINK_NAMES,
    version=lib.SWP_VERSION, meta_type="struct swp_meta", object_path=bpf_object_path,
    unload_cmd="swatch policy-unload",
    load_hint="swatch policy-load --pid PID --policy POLICY",
)


# --------------------------------------------------------------------------- tiers


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


def _prog_names(tier: str, ops: list[str]) -> list[str]:
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
    to that tier, and :func:`load_pinned` falls back to ``thorough`` (one probe per operation)
    only if the real load then fails. ``forced`` (tests, env SWATCH_POLICY_TIER) caps the
    choice: 'fmod_ret' skips the LSM tier, 'cgroup' both hook tiers, 'reactive' cgroup-BPF too.
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
        if not _try_load(_prog_names(tier, ["fork"])):  # task_alloc: the smallest program
            continue
        ok = [op for op in todo if _try_load(_prog_names(tier, [op]))] if thorough else todo
        for op in ok:
            chosen[op] = OpPlan(op, tier, reactive_part=False)
        todo = [op for op in todo if op not in chosen]
    for op in todo:
        if op in CGROUP_PROGS and start <= order.index("cgroup"):
            chosen[op] = OpPlan(op, "cgroup", reactive_part=True)
        else:
            chosen[op] = OpPlan(op, "reactive", reactive_part=True)
    return [chosen[op] for op in policy_ops(policy)]


# --------------------------------------------------------------------------- sessions


@dataclass
class DenialCounts:
    by_op: dict[str, int] = field(default_factory=dict)
    by_rule: dict[int, int] = field(default_factory=dict)
    emitted: int = 0
    dropped: int = 0
    untracked: int = 0         # children "targets" had no room for (--max-pids)
    killed_untracked: int = 0  # of those, killed at their first syscall (cgroup tier in use)
    unmarked: int = 0          # children not even marked (no memory): their parent was killed


class PolicySession(MapSet):
    """The enforcer's maps, from an object this process loaded or from pins."""

    MAP_TYPES = MAPS

    def rules(self):  # type: ignore[no-untyped-def]
        return self._one("rules")[1]

    def policy_name(self) -> str:
        return _cstr(self.meta().policy)

    def path_rules(self) -> list[str]:
        r = self.rules()
        return [_cstr(r.paths[i].path) for i in range(r.npaths)]

    def tiers(self) -> dict[str, str]:
        r = self.rules()
        return {op: TIER_NAMES[r.tier[i]] for i, op in enumerate(OPERATIONS) if r.tier[i]}

    def counts(self) -> DenialCounts:
        key = libbpf.new("uint32_t *", 0)
        vals = libbpf.new("struct swp_counts[]", libbpf.NUM_CPUS)
        self.maps["counts"].lookup(key, vals)
        cpus = range(libbpf.NUM_CPUS)
        out = DenialCounts()
        for i, op in enumerate(OPERATIONS):
            out.by_op[op] = sum(vals[c].ops[i] for c in cpus)
        for i in range(lib.SWP_MAX_PATHS):
            out.by_rule[i] = sum(vals[c].rules[i] for c in cpus)
        out.emitted = sum(vals[c].emitted for c in cpus)
        out.dropped = sum(vals[c].dropped for c in cpus)
        out.untracked = sum(vals[c].untracked for c in cpus)
        out.killed_untracked = sum(vals[c].killed_untracked for c in cpus)
        out.unmarked = sum(vals[c].unmarked for c in cpus)
        return out

    def pids(self) -> list[int]:
        return sorted(int(k[0]) for k in self.maps["targets"].keys("uint32_t *"))

    def add_pid(self, pid: int) -> None:
        self.maps["targets"].update(libbpf.new("uint32_t *", pid), libbpf.new("uint8_t *", 1))

    def remove_pid(self, pid: int) -> None:
        self.maps["targets"].delete(libbpf.new("uint32_t *", pid))


class LoadedPolicy(LoadedComponent, PolicySession):
    """An enforcer this process loaded: owns the object and (until pinned) the links."""

    COMPONENT = POLICY

    def __init__(self, obj: BpfObject, links: dict[str, Link], plans: list[OpPlan]) -> None:
        super().__init__(obj, links)
        self.plans = plans

    @classmethod
    def load(cls, policy: Policy, target: Target, plans: list[OpPlan],
             audit_only: bool = False) -> LoadedPolicy:
        require_root()
        require_btf()
        if target.mode not in ("pid", "cgroup"):
            raise SwatchError("policy-load needs a target: --pid PID or --container REF")
        wanted = set(TRACKING_PROGS) if target.mode == "pid" else set()
        cgroup_progs: list[str] = []
        for p in plans:
            if p.tier in ("lsm", "fmod_ret"):
                wanted.update(_prog_names(p.tier, [p.op]))
            if p.tier == "cgroup" and p.op in CGROUP_PROGS:
                cgroup_progs += CGROUP_PROGS[p.op]
            if p.reactive_part:
                wanted.add("swp_sys_enter")
        wanted.update(cgroup_progs)
        cgroup_fd = -1
        if cgroup_progs:
            from syscall_watcher.targets.containers import cgroup_v2_root

            cgroup_fd = os.open(cgroup_v2_root(), os.O_RDONLY | os.O_DIRECTORY)
        obj = BpfObject(bpf_object_path())
        links: dict[str, Link] = {}
        held: PidFd | None = None
        try:
            for name, prog in obj.programs.items():
                prog.set_autoload(name in wanted)
            cfg = libbpf.new("struct swp_config *")
            cfg.mode = lib.SW_TARGET_PID if target.mode == "pid" else lib.SW_TARGET_CGROUP
            cfg.audit_only = 1 if audit_only else 0
            cfg.target_cgroup = target.cgroup_id
            cfg.target_cgroup_level = target.cgroup_level
            # The cgroup tier sees only "targets": a child it has no room for is killed.
            cfg.kill_untracked = 1 if target.mode == "pid" and cgroup_progs else 0
            obj.set_rodata(cfg)
            max_pids = max_pids_for(target)
            obj.set_max_entries("targets", max_pids)
            obj.load()
            loaded = cls(obj, links, plans)
            held = PidFd(target.pid) if target.mode == "pid" else None
            loaded._fill(policy, target, plans, audit_only, max_pids)
            # Track the process tree first, so no child escapes between attach and fill.
            for name in sorted(wanted, key=lambda n: n not in TRACKING_PROGS):
                prog = obj.programs[name]
                if name in cgroup_progs:
                    loaded.links[name] = prog.attach_cgroup(cgroup_fd)
                else:
                    loaded.links[name] = prog.attach()
            if target.mode == "pid":
                add_existing(loaded, descendants(target.pid, skip=os.getpid()), max_pids)
            if held is not None and held.exited():
                # It died while we loaded: its exit may have passed before its pid was
                # written, and a reused pid would inherit the policy. Fail, leave nothing.
                raise SwatchError(f"process {target.pid} exited while the policy was "
                                  "loading; nothing was loaded")
            return loaded
        except BaseException:
            for link in links.values():
                link.destroy()
            obj.close()
            raise
        finally:
            if held is not None:
                held.close()
            if cgroup_fd >= 0:
                os.close(cgroup_fd)

    def _fill(self, policy: Policy, target: Target, plans: list[OpPlan], audit_only: bool,
              max_pids: int) -> None:
        r = libbpf.new("struct swp_rules *")
        for op in policy.blocks:
            r.block |= 1 << OPERATIONS.index(op)
        for i, rule in enumerate(policy.protects):
            mask = sum(1 << OPERATIONS.index(op) for op in rule.ops)
            r.paths[i].ops = mask
            r.path_ops |= mask
            path = rule.path.encode()
            r.paths[i].len = len(path)
            r.paths[i].path = path
        r.npaths = len(policy.protects)
        tier_ids = {v: k for k, v in TIER_NAMES.items()}
        reactive_ops = set()
        for p in plans:
            i = OPERATIONS.index(p.op)
            r.tier[i] = tier_ids[p.tier]
            if p.reactive_part:
                r.reactive |= 1 << i
                reactive_ops.add(p.op)
        self.maps["rules"].update(libbpf.new("uint32_t *", 0), r)

        cgroup_ops = {p.op for p in plans if p.tier == "cgroup"}
        entries = reactive_entries(reactive_ops, cgroup_ops)
        key = libbpf.new("uint32_t *")
        info = libbpf.new("struct swp_syscall *")
        for nr, (op_id, flags, path, path2, fd) in entries.items():
            key[0] = nr
            info.op, info.flags, info.path_arg, info.path2_arg, info.fd_arg = (
                op_id, flags, path, path2, fd)
            self.maps["reactive"].update(key, info)

        meta = libbpf.new("struct swp_meta *")
        meta.version = lib.SWP_VERSION
        meta.mode = lib.SW_TARGET_PID if target.mode == "pid" else lib.SW_TARGET_CGROUP
        meta.target_pid = target.pid
        meta.audit_only = 1 if audit_only else 0
        meta.loader_pid = os.getpid()
        meta.load_time_ns = time.time_ns()
        meta.target_cgroup = target.cgroup_id
        meta.policy = policy.name.encode()[:63]
        meta.target_label = target.label.encode()[:63]
        meta.max_pids = max_pids
        self.maps["meta"].update(libbpf.new("uint32_t *", 0), meta)
        if target.mode == "pid":
            self.add_pid(target.pid)


def policy_state(pin_dir: Path) -> PinState:
    """What pin_dir holds (component.py defines absent / loaded / stale / foreign)."""
    return POLICY.status(pin_dir)


def policy_status(pin_dir: Path) -> str:
    """'absent', 'loaded', 'stale' or 'foreign': loaded only when every link is pinned."""
    return POLICY.status(pin_dir).state


class PinnedPolicy(PinnedComponent, PolicySession):
    """The maps of a policy loaded earlier by `swatch policy-load`."""

    COMPONENT = POLICY


def load_pinned(policy: Policy, target: Target, pin_dir: Path, audit_only: bool = False,
                require_preventive: bool = False,
                forced_tier: str | None = None) -> tuple[Path, list[OpPlan]]:
    """`swatch policy-load`: probe, load, attach, pin, return. Nothing stays half-loaded."""
    require_root()
    require_btf()
    POLICY.require_free(pin_dir, already=f"a policy is already loaded (pins in {pin_dir}); "
                        "`swatch policy-unload` first")
    plans = plan(policy, forced_tier)
    _check_preventive(plans, require_preventive)
    try:
        loaded = LoadedPolicy.load(policy, target, plans, audit_only)
    except BpfError:
        if not any(p.tier in ("lsm", "fmod_ret") for p in plans):
            raise
        # A hook the quick probe did not cover was refused: probe operation by operation.
        plans = plan(policy, forced_tier, thorough=True)
        _check_preventive(plans, require_preventive)
        loaded = LoadedPolicy.load(policy, target, plans, audit_only)
    try:
        loaded.pin(pin_dir)
    finally:
        loaded.close()
    return pin_dir, plans


def _check_preventive(plans: list[OpPlan], required: bool) -> None:
    weak = [p.op for p in plans if not p.preventive]
    if required and weak:
        raise SwatchError(
            f"--require-preventive: on this kernel {', '.join(weak)} would be held (wholly or "
            "for some socket families) only reactively, by SIGKILL after the call; nothing "
            "was loaded")


def unload(pin_dir: Path) -> list[str] | None:
    """Remove the policy's pins; None if there were none, else what was left behind."""
    require_root()
    return POLICY.unload(pin_dir)


# --------------------------------------------------------------------------- summary


def _cstr(cdata) -> str:  # type: ignore[no-untyped-def]
    return libbpf.to_bytes(cdata).split(b"\0", 1)[0].decode(errors="replace")


def summary(session: PolicySession) -> dict:  # type: ignore[type-arg]
    meta = session.meta()
    counts = session.counts()
    rules = session.rules()
    paths = session.path_rules()
    return {
        "policy": _cstr(meta.policy),
        "target": _cstr(meta.target_label),
        "audit_only": bool(meta.audit_only),
        "tiers": session.tiers(),
        "denials": {op: n for op, n in counts.by_op.items() if op in session.tiers()},
        "rules": [{"path": p, "ops": [op for i, op in enumerate(OPERATIONS)
                                      if rules.paths[k].ops & (1 << i)],
                   "denials": counts.by_rule.get(k, 0)} for k, p in enumerate(paths)],
        "total": counts.emitted,
        "records_lost": counts.dropped,
        "max_pids": int(meta.max_pids),
        "untracked": counts.untracked,
        "killed_untracked": counts.killed_untracked,
        "unmarked": counts.unmarked,
        "pids": session.pids() if meta.mode == lib.SW_TARGET_PID else [],
    }


def render_summary(s: dict) -> str:  # type: ignore[type-arg]
    mode = " (audit only)" if s["audit_only"] else ""
    lines = [f"swatch — policy {s['policy']}{mode} on {s['target']}: {s['total']:,} denials"]
    lines.append(f"  {'OPERATION':12} {'TIER':9} {'DENIALS':>9}")
    for op, n in s["denials"].items():
        lines.append(f"  {op:12} {s['tiers'].get(op, '-'):9} {n:>9,}")
    if s["rules"]:
        labels = [f"{r['path']} ({' '.join(r['ops'])})" for r in s["rules"]]
        width = max(22, *(len(label) for label in labels))
        lines.append(f"  {'PATH RULE':{width}} {'DENIALS':>9}")
        for label, r in zip(labels, s["rules"]):
            lines.append(f"  {label:{width}} {r['denials']:>9,}")
    if s.get("untracked"):
        lines.append(f"  WARNING: {s['untracked']:,} processes of the target found no room in its "
                     f"map (--max-pids {s['max_pids']:,}); policed by task-local storage, and "
                     f"{s['killed_untracked']:,} killed at their first syscall (the cgroup tier "
                     "cannot see them)")
    if s.get("unmarked"):
        lines.append(f"  WARNING: {s['unmarked']:,} children could not be tracked at all (out of "
                     "memory): their parent was killed")
    if s["records_lost"]:
        lines.append(f"  {s['records_lost']:,} denial records lost (ring buffer full); "
                     "counted above")
    return "\n".join(lines) + "\n"
