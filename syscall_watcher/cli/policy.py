"""`swatch policy load|summary|phase|unload`: enforce a policy, count its denials, switch its
phase, remove it.

The old flat spellings (`swatch policy-load` …) still work: the group's class is
HyphenAliasedGroup (cli/app.py).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from syscall_watcher.cli.errors import user_errors
from syscall_watcher.cli.groups import HyphenAliasedGroup
from syscall_watcher.cli.options import (
    JsonOpt,
    MaxPidsOpt,
    PidOpt,
    PolicyContainerOpt,
    PolicyPinDirOpt,
)

app = typer.Typer(
    name="policy", cls=HyphenAliasedGroup, no_args_is_help=True, rich_markup_mode=None,
    help="Enforce a policy on a process tree or container (load), count what it denied "
    "(summary), switch its phase (phase), remove it (unload). `swatch watch` shows the "
    "denials live.",
    short_help="Enforce a policy: load | summary | phase | unload (also policy-load …).",
)


@app.command("load")
@user_errors
def policy_load(
    policy: Annotated[str, typer.Option(
        "--policy", "-P", metavar="POLICY", help="Policy file, or a built-in name (no-network, "
        "no-exec, read-only-fs, protect-system).")],
    pid: PidOpt = None,
    container: PolicyContainerOpt = None,
    audit_only: Annotated[bool, typer.Option(
        "--audit-only", help="Report what would be denied; deny nothing.")] = False,
    require_preventive: Annotated[bool, typer.Option(
        "--require-preventive", help="Refuse to load if any operation could only be held "
        "reactively (SIGKILL after the call).")] = False,
    max_pids: MaxPidsOpt = None,
    pin_dir: PolicyPinDirOpt = None,
    phase: Annotated[str | None, typer.Option(
        "--phase", metavar="NAME", help="Start in this phase of a policy with phases "
        "(default: the first it defines); `swatch policy phase` switches later.")] = None,
) -> None:
    """Enforce a policy on a process tree or container; pinned, returns at once."""
    from syscall_watcher.errors import SwatchError
    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.policy.enforcer import load_pinned, pin_dir_default
    from syscall_watcher.policy.language import load_policy
    from syscall_watcher.targets.resolve import one_pid, resolve_target

    require_root()
    pol = load_policy(policy)
    if not pid and container is None:
        raise SwatchError("policy-load needs a target: --pid PID or --container REF")
    if phase is not None:
        pol.phase_index(phase)  # a policy without phases, an unknown phase: one line
    target = resolve_target(one_pid(pid), container=container, max_pids=max_pids)
    start = time.monotonic()
    path, plans = load_pinned(pol, target, pin_dir_default(pin_dir), audit_only=audit_only,
                              require_preventive=require_preventive, phase=phase)
    mode = " in audit-only mode (nothing is denied)" if audit_only else ""
    typer.echo(f"swatch: policy {pol.name} on {target.label}{mode}, pinned in {path} "
               f"[{(time.monotonic() - start) * 1000:.0f} ms]")
    if pol.phases:
        first = phase or pol.phases[0].name
        typer.echo(f"  phases: {', '.join(pol.phase_names)}; now in {first} "
                   "(`swatch policy phase NAME` switches; the tiers below hold every phase)")
    for p in plans:
        typer.echo(f"  {p.op}: {p.describe(pol)}")
    typer.echo("`swatch watch` shows denials, `swatch policy summary` counts them, "
               "`swatch policy unload` stops.")


@app.command("summary")
@user_errors
def policy_summary(json: JsonOpt = False, pin_dir: PolicyPinDirOpt = None) -> None:
    """Denials so far, per operation and per path rule (counted in the kernel)."""
    import json as jsonlib

    from syscall_watcher.policy.enforcer import PinnedPolicy, pin_dir_default, render_summary
    from syscall_watcher.policy.enforcer import summary as policy_counts

    session = PinnedPolicy.open(pin_dir_default(pin_dir))
    try:
        info = policy_counts(session)
    finally:
        session.close()
    if json:
        typer.echo(jsonlib.dumps(info))
    else:
        typer.echo(render_summary(info), nl=False)


@app.command("unload")
@user_errors
def policy_unload(pin_dir: PolicyPinDirOpt = None) -> None:
    """Detach and remove the loaded policy. Safe to run twice."""
    from syscall_watcher.cli.trace import report_unload
    from syscall_watcher.policy.enforcer import pin_dir_default, unload

    path = pin_dir_default(pin_dir)
    report_unload(unload(path), path, "policy unloaded", "no policy loaded")


@app.command("phase")
@user_errors
def policy_phase(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The phase to switch to.")],
    json: JsonOpt = False,
    pin_dir: PolicyPinDirOpt = None,
) -> None:
    """Switch the loaded policy to phase NAME at once (one map update); print what changed."""
    import json as jsonlib

    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.policy.enforcer import pin_dir_default
    from syscall_watcher.policy.phases import switch_pinned

    require_root()
    switch = switch_pinned(pin_dir_default(pin_dir), name)
    if switch is None:
        if json:
            typer.echo(jsonlib.dumps({"phase": name, "changed": False}))
        else:
            typer.echo(f"swatch: already in phase {name}; nothing changed")
        return
    if json:
        typer.echo(jsonlib.dumps(switch.record()))
        return
    typer.echo(f"swatch: policy {switch.policy}: phase {switch.previous} -> {switch.phase}")
    for line in switch.change_lines():
        typer.echo(f"  {line}")
