"""The enforcer's maps: a Policy and its plan encoded into their values, and read back.

Written once at load (``PolicySession.write_policy``): ``rules`` (blocked operations, path
rules, the tier of each operation; one entry per phase), ``phase`` (which entry the checks
read; `swatch policy phase` rewrites it, policy/phases.py), ``reactive`` (per syscall: which
operation it is and which arguments hold its path, second path and fd), ``meta`` (policy,
target, mode) and, for a pid target, ``targets``. Read by ``policy-summary`` and the denial streamer through the same
session class, whether the object was loaded by this process or opened from pins.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from syscall_watcher.errors import BpfError
from syscall_watcher.kernel import libbpf, syscalls
from syscall_watcher.kernel.libbpf import MapSet, lib
from syscall_watcher.policy.language import OPERATIONS, Phase, Policy
from syscall_watcher.policy.tiers import REACTIVE_SYSCALLS, TIER_NAMES, OpPlan
from syscall_watcher.targets.target import Target

# The maps userspace opens (pinned under <pin dir>/maps/), with their key/value C types.
MAPS = {
    "denials": (None, None),
    "targets": ("uint32_t", "uint8_t"),
    "rules": ("uint32_t", "struct swp_rules"),
    "reactive": ("uint32_t", "struct swp_syscall"),
    "counts": ("uint32_t", "struct swp_counts"),
    "meta": ("uint32_t", "struct swp_meta"),
    "phase": ("uint32_t", "struct swp_phase_state"),
}


def cstr(cdata) -> str:  # type: ignore[no-untyped-def]
    """A C string from a map value (a policy name, a path rule, a label)."""
    return libbpf.to_bytes(cdata).split(b"\0", 1)[0].decode(errors="replace")


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
            elif sc.flags & lib.SWP_R_OPEN_WRITE:  # file_open's entry for this open: a write too
                have[1] |= flags
                have[4] = sc.fd
            elif op == "write":  # another op's entry (rename): its paths are writes too
                have[1] |= flags | lib.SWP_R_ALSO_WRITE
            else:
                have[1] |= flags
    return {nr: (e[0], e[1], e[2], e[3], e[4]) for nr, e in entries.items()}


def rules_value(policy: Policy, plans: list[OpPlan],  # type: ignore[no-untyped-def]
                phase: Phase | None = None):
    """A value of ``rules``: blocked operations, path rules, the tier of each operation and
    which of them the reactive tier holds (wholly or in part) — for ``phase`` (its entry),
    else for the policy as a whole. Path rule i is ``policy.protects[i]`` in every phase."""
    r = libbpf.new("struct swp_rules *")
    for op in (phase.blocks if phase is not None else policy.blocks):
        r.block |= 1 << OPERATIONS.index(op)
    for i, rule in enumerate(policy.protects):
        ops = phase.ops_on(rule.path) if phase is not None else rule.ops
        mask = sum(1 << OPERATIONS.index(op) for op in ops)
        r.paths[i].ops = mask
        r.path_ops |= mask
        path = rule.path.encode()
        r.paths[i].len = len(path)
        r.paths[i].path = path
    r.npaths = len(policy.protects)
    tier_ids = {v: k for k, v in TIER_NAMES.items()}
    for p in plans:
        i = OPERATIONS.index(p.op)
        r.tier[i] = tier_ids[p.tier]
        if p.reactive_part:
            r.reactive |= 1 << i
    if phase is not None:
        r.phase = phase.name.encode()
    return r


def phase_state_value(current: int, previous: int, seq: int):  # type: ignore[no-untyped-def]
    """``phase``'s one value: the entry of ``rules`` the checks read, and the switch."""
    st = libbpf.new("struct swp_phase_state *")
    st.current, st.previous, st.seq = current, previous, seq
    st.time_ns = time.time_ns()
    st.ktime_ns = time.monotonic_ns()
    return st


def meta_value(policy: Policy, target: Target, audit_only: bool,  # type: ignore[no-untyped-def]
               max_pids: int):
    """``meta``'s one value (component.py's pin sets its link mask last)."""
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
    meta.nphases = len(policy.phases)
    return meta


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

    def rules(self, phase: int | None = None):  # type: ignore[no-untyped-def]
        """The rules of phase ``phase`` (an index), else of the current phase."""
        key = libbpf.new("uint32_t *", self.phase_state().current if phase is None else phase)
        val = libbpf.new("struct swp_rules *")
        if not self.maps["rules"].lookup(key, val):
            raise BpfError(f"read entry {key[0]} of map rules", 2)
        return val

    def phase_state(self):  # type: ignore[no-untyped-def]
        return self._one("phase")[1]

    def phase_names(self) -> list[str]:
        """The loaded policy's phases, in order ([] for a policy without phases)."""
        return [cstr(self.rules(i).phase) for i in range(int(self.meta().nphases))]

    def set_phase(self, index: int, previous: int, seq: int) -> None:
        """Make every check read entry ``index`` of ``rules``: one update of ``phase``."""
        self.maps["phase"].update(libbpf.new("uint32_t *", 0),
                                  phase_state_value(index, previous, seq))

    def policy_name(self) -> str:
        return cstr(self.meta().policy)

    def path_rules(self) -> list[str]:
        r = self.rules()
        return [cstr(r.paths[i].path) for i in range(r.npaths)]

    def tiers(self) -> dict[str, str]:
        r = self.rules()
        return {op: TIER_NAMES[r.tier[i]] for i, op in enumerate(OPERATIONS) if r.tier[i]}

    def counts(self) -> DenialCounts:
        vals = self._one_per_cpu("counts")
        return DenialCounts(
            by_op={op: vals.sum("ops", i) for i, op in enumerate(OPERATIONS)},
            by_rule={i: vals.sum("rules", i) for i in range(lib.SWP_MAX_PATHS)},
            **{f: vals.sum(f) for f in ("emitted", "dropped", "untracked", "killed_untracked",
                                        "unmarked")})

    def pids(self) -> list[int]:
        return sorted(int(k[0]) for k in self.maps["targets"].keys("uint32_t *"))

    def add_pid(self, pid: int) -> None:
        self.maps["targets"].update(libbpf.new("uint32_t *", pid), libbpf.new("uint8_t *", 1))

    def remove_pid(self, pid: int) -> None:
        self.maps["targets"].delete(libbpf.new("uint32_t *", pid))

    def write_policy(self, policy: Policy, target: Target, plans: list[OpPlan],
                     audit_only: bool, max_pids: int, start_phase: int = 0) -> None:
        """Fill the maps of a freshly loaded object (before its programs attach)."""
        zero = libbpf.new("uint32_t *", 0)
        if policy.phases:
            for i, phase in enumerate(policy.phases):
                self.maps["rules"].update(libbpf.new("uint32_t *", i),
                                          rules_value(policy, plans, phase))
        else:
            self.maps["rules"].update(zero, rules_value(policy, plans))
        self.maps["phase"].update(zero, phase_state_value(start_phase, start_phase, 0))
        entries = reactive_entries({p.op for p in plans if p.reactive_part},
                                   {p.op for p in plans if p.tier == "cgroup"})
        key = libbpf.new("uint32_t *")
        info = libbpf.new("struct swp_syscall *")
        for nr, (op_id, flags, path, path2, fd) in entries.items():
            key[0] = nr
            info.op, info.flags, info.path_arg, info.path2_arg, info.fd_arg = (
                op_id, flags, path, path2, fd)
            self.maps["reactive"].update(key, info)
        self.maps["meta"].update(zero, meta_value(policy, target, audit_only, max_pids))
        if target.mode == "pid":
            self.add_pid(target.pid)
