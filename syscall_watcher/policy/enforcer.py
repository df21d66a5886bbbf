"""The enforcer component: load a planned policy, attach, pin, report, unload.

The enforcer (``build/policy.bpf.o``) is independent of the tracer: either can be loaded alone,
or both on the same target. Its pieces: tiers.py plans which tier holds each operation (the
tiers are described there), maps.py encodes the policy into the maps and reads them back, and
kernel/component.py is the pinned-component lifecycle this module declares the enforcer to.

A loaded policy's denials are streamed by policy/denials.py (DenialSource, read_denials).
"""

from __future__ import annotations

import os
from pathlib import Path

from syscall_watcher.errors import BpfError, SwatchError
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.component import (
    Component,
    LoadedComponent,
    PinnedComponent,
    PinState,
    pin_dir_from,
)
from syscall_watcher.kernel.libbpf import BpfObject, Link, lib
from syscall_watcher.kernel.system import require_btf, require_root
from syscall_watcher.policy.language import OPERATIONS, Policy
from syscall_watcher.policy.maps import MAPS, PolicySession, cstr
from syscall_watcher.policy.tiers import (
    TRACKING_PROGS,
    OpPlan,
    bpf_object_path,
    check_preventive,
    plan,
    programs_for,
)
from syscall_watcher.targets.process import PidFd, add_existing, descendants
from syscall_watcher.targets.target import Target, max_pids_for

DEFAULT_PIN_DIR = "/sys/fs/bpf/syscall_watcher_policy"


def pin_dir_default(value: str | Path | None = None) -> Path:
    """--pin-dir's value, else $SWATCH_POLICY_PIN_DIR, else the default; empty is an error."""
    return pin_dir_from(value, "SWATCH_POLICY_PIN_DIR", DEFAULT_PIN_DIR)


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
    # the reactive tier's io_uring submissions (one of the two, as the kernel has)
    "swp_uring_submit_req", "swp_uring_submit_sqe",
)

POLICY = Component(
    kind="policy", noun="policy pins", maps=tuple(MAPS), links=LINK_NAMES,
    version=lib.SWP_VERSION, meta_type="struct swp_meta", object_path=bpf_object_path,
    unload_cmd="swatch policy-unload",
    load_hint="swatch policy-load --pid PID --policy POLICY",
)


class LoadedPolicy(LoadedComponent, PolicySession):
    """An enforcer this process loaded: owns the object and (until pinned) the links."""

    COMPONENT = POLICY

    def __init__(self, obj: BpfObject, links: dict[str, Link], plans: list[OpPlan]) -> None:
        super().__init__(obj, links)
        self.plans = plans

    @classmethod
    def load(cls, policy: Policy, target: Target, plans: list[OpPlan],
             audit_only: bool = False, start_phase: int = 0) -> LoadedPolicy:
        require_root()
        require_btf()
        if target.mode not in ("pid", "cgroup"):
            raise SwatchError("policy-load needs a target: --pid PID or --container REF")
        wanted, cgroup_progs = programs_for(plans, target.mode)
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
            loaded.write_policy(policy, target, plans, audit_only, max_pids, start_phase)
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
                require_preventive: bool = False, forced_tier: str | None = None,
                phase: str | None = None) -> tuple[Path, list[OpPlan]]:
    """`swatch policy-load`: probe, load, attach, pin, return. Nothing stays half-loaded.
    A policy with phases starts in ``phase`` (default: its first); every phase's rules are
    loaded, and the plan covers what any phase denies (policy.blocks/protects, their union)."""
    require_root()
    require_btf()
    start_phase = 0
    if phase is not None:
        start_phase = policy.phase_index(phase)  # no phases, unknown name: SwatchError
    POLICY.require_free(pin_dir, already=f"a policy is already loaded (pins in {pin_dir}); "
                        "`swatch policy-unload` first")
    plans = plan(policy, forced_tier)
    check_preventive(plans, require_preventive)
    try:
        loaded = LoadedPolicy.load(policy, target, plans, audit_only, start_phase)
    except BpfError:
        if not any(p.tier in ("lsm", "fmod_ret") for p in plans):
            raise
        # A hook the quick probe did not cover was refused: probe operation by operation.
        plans = plan(policy, forced_tier, thorough=True)
        check_preventive(plans, require_preventive)
        loaded = LoadedPolicy.load(policy, target, plans, audit_only, start_phase)
    try:
        loaded.pin(pin_dir)
    finally:
        loaded.close()
    return pin_dir, plans


def unload(pin_dir: Path) -> list[str] | None:
    """Remove the policy's pins; None if there were none, else what was left behind."""
    require_root()
    return POLICY.unload(pin_dir)


# --------------------------------------------------------------------------- summary

# Numbers from bpf/policy.h through cffi, never copied (tests/test_constants.py ties the names).
# A denial's action by name (policy/denials.py tells the C formatter).
ACTION_NAMES = {lib.SWP_ACT_BLOCKED: "blocked", lib.SWP_ACT_KILLED: "killed",
                lib.SWP_ACT_AUDIT: "audit"}


def summary(session: PolicySession) -> dict:  # type: ignore[type-arg]
    meta = session.meta()
    counts = session.counts()
    rules = session.rules()
    paths = session.path_rules()
    phases = session.phase_names()
    return {
        "policy": cstr(meta.policy),
        "phase": cstr(rules.phase) if phases else None,
        "phases": phases,
        "target": cstr(meta.target_label),
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
    phase = f", phase {s['phase']} (of {', '.join(s['phases'])})" if s.get("phase") else ""
    lines = [f"swatch — policy {s['policy']}{mode}{phase} on {s['target']}: "
             f"{s['total']:,} denials"]
    lines.append(f"  {'OPERATION':12} {'TIER':9} {'DENIALS':>9}")
    for op, n in s["denials"].items():
        lines.append(f"  {op:12} {s['tiers'].get(op, '-'):9} {n:>9,}")
    if s["rules"]:
        labels = [f"{r['path']} ({' '.join(r['ops']) or 'not in this phase'})"
                  for r in s["rules"]]
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
