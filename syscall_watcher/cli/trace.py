"""The tracing commands, at the top level: load, watch, status, summary, unload, run, profiles."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from syscall_watcher.cli.errors import user_errors
from syscall_watcher.cli.options import (
    AncestryOpt,
    ColorMode,
    ColorOpt,
    CommOpt,
    ContainerOpt,
    DurationsOpt,
    FailedOpt,
    FilterOpt,
    FollowForksOpt,
    JsonOpt,
    MaxPidsOpt,
    NoChildrenOpt,
    NoLatencyOpt,
    OutputOpt,
    PidOpt,
    PinDirOpt,
    RelativeOpt,
    RingSizeOpt,
    StatsSlotsOpt,
    StringLimitOpt,
    SyscallsOpt,
    TimestampsOpt,
    AgentOpt,
    TlsBytesOpt,
    TlsLibOpt,
    TlsOpt,
    UidOpt,
    WatchPolicyPinDirOpt,
    WatchSyscallsOpt,
    positive_seconds,
)
from syscall_watcher.errors import SwatchError
from syscall_watcher.trace.tracer import (DEFAULT_RING_SIZE, RUN_RING_SIZE, pin_dir_default,
                                          require_root)

commands = typer.Typer()


@commands.command()
@user_errors
def load(
    pid: PidOpt = None,
    comm: CommOpt = None,
    uid: UidOpt = None,
    container: ContainerOpt = None,
    filter: FilterOpt = None,
    syscalls_expr: SyscallsOpt = None,
    failed: FailedOpt = False,
    follow_forks: FollowForksOpt = True,
    no_children: NoChildrenOpt = False,
    ring_size: RingSizeOpt = DEFAULT_RING_SIZE,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Replace a tracer already loaded.")] = False,
    max_pids: MaxPidsOpt = None,
    stats_slots: StatsSlotsOpt = None,
    no_latency: NoLatencyOpt = False,
    pin_dir: PinDirOpt = None,
) -> None:
    """Load the tracer, pin it under bpffs and return; tracing goes on without us."""
    from syscall_watcher.targets.resolve import resolve_target
    from syscall_watcher.trace.tracer import load_pinned
    from syscall_watcher.trace.view import select_syscalls

    require_root()
    if no_latency and (filter or syscalls_expr or failed):
        raise SwatchError("--no-latency counts only: --filter, -e and --failed choose events, "
                          "which it does not stream")
    sel = select_syscalls(filter, syscalls_expr)
    if no_children and not pid:
        raise SwatchError("--no-children applies to --pid only (the other targets have no tree "
                          "to follow)")
    target = resolve_target(pid, comm, uid, container, no_children=no_children,
                            max_pids=max_pids, stats_slots=stats_slots)
    start = time.monotonic()
    path = load_pinned(target, sel.label, pin_dir_default(pin_dir), ring_size, replace=replace,
                       enabled=sel.syscalls, failed_only=failed, latency=not no_latency)
    typer.echo(f"swatch: tracing {target.label} (filter {sel.label}"
               + (", counting only: no latency, no events" if no_latency else "")
               + f"), pinned in {path} [{(time.monotonic() - start) * 1000:.0f} ms]. "
               + ("`swatch summary` to see the counts" if no_latency
                  else "`swatch watch` to see events")
               + ", `swatch unload` to stop.")


WATCH_HELP = (
    "Stream the loaded tracer's events, and a loaded policy's denials, live and in time order, "
    "until Ctrl-C, SIGTERM or SIGHUP.\n\n"
    "Each of those signals stops the stream the same way: every event delivered is written, "
    "then swatch detaches. Exits 1 if the output fails (a full disk, a closed pipe)."
)


@commands.command(help=WATCH_HELP)
@user_errors
def watch(
    json: JsonOpt = False,
    output: OutputOpt = None,
    color: ColorOpt = ColorMode.auto,
    duration: Annotated[float | None, typer.Option(
        "--duration", metavar="SECONDS", help="Stop after this many seconds.")] = None,
    syscalls_expr: WatchSyscallsOpt = None,
    failed: FailedOpt = False,
    durations: DurationsOpt = False,
    t_count: TimestampsOpt = 0,
    relative: RelativeOpt = False,
    strsize: StringLimitOpt = 0,
    ancestry: AncestryOpt = False,
    pin_dir: PinDirOpt = None,
    policy_pin_dir: WatchPolicyPinDirOpt = None,
    tls: TlsOpt = False,
    tls_bytes: TlsBytesOpt = 16384,
    tls_lib: TlsLibOpt = None,
    agent: AgentOpt = False,
) -> None:
    """Stream the loaded tracer's events, and a loaded policy's denials (help: WATCH_HELP)."""
    from syscall_watcher.policy.enforcer import pin_dir_default as policy_pin_dir_default
    from syscall_watcher.trace.view import ViewOptions
    from syscall_watcher.trace.watch import watch as watch_pinned

    positive_seconds("--duration", duration)
    tls_settings = tls_options(tls or agent, tls_bytes, tls_lib)
    view = ViewOptions(json=json, failed_only=failed, show_duration=durations, t_count=t_count,
                       relative=relative, strsize=strsize, ancestry=ancestry)
    if not watch_pinned(pin_dir_default(pin_dir), policy_pin_dir_default(policy_pin_dir),
                        view=view, exprs=syscalls_expr, output=output, color=color.value,
                        duration=duration, tls=tls_settings, agent=agent):
        raise typer.Exit(1)


@commands.command()
@user_errors
def status(
    json: JsonOpt = False,
    programs: Annotated[bool, typer.Option(
        "--programs", help="Also sample each program's ns per run and runs per second for 1 s "
        "(BPF run-time statistics are enabled for that second only).")] = False,
    pin_dir: PinDirOpt = None,
) -> None:
    """What is loaded: target, filter, traced pids, event and drop counters."""
    import json as jsonlib

    from syscall_watcher.trace.status import tracer_status

    report = tracer_status(pin_dir_default(pin_dir), programs)
    if json:
        typer.echo(jsonlib.dumps(report.info))
        return
    for line in report.lines:
        typer.echo(line)
    for line in report.warnings:
        typer.secho(f"  WARNING    {line}", fg="red", err=False)


@commands.command()
@user_errors
def summary(
    interval: Annotated[float, typer.Option(
        "--interval", "-i", metavar="SECONDS", help="Seconds between refreshes.")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Print once and exit.")] = False,
    json: JsonOpt = False,
    top: Annotated[int | None, typer.Option(
        "--top", "-n", metavar="N", help="Show only the first N rows.")] = None,
    by: Annotated[str, typer.Option(
        "--by", metavar="KEY", help="syscall | pid | container")] = "syscall",
    sort: Annotated[str, typer.Option(
        "--sort", metavar="KEY",
        help="count | errors | bytes_in | bytes_out | avg | p99 | name")] = "count",
    pin_dir: PinDirOpt = None,
) -> None:
    """Cumulative per-syscall (or per-process, per-container) counts, kept in the kernel."""
    from syscall_watcher.trace.summary import show_pinned_summary

    show_pinned_summary(pin_dir_default(pin_dir), by=by, sort=sort, top=top, interval=interval,
                        once=once, json_lines=json)


@commands.command()
@user_errors
def unload(pin_dir: PinDirOpt = None) -> None:
    """Detach and remove everything `swatch load` pinned. Safe to run twice."""
    from syscall_watcher.trace.tracer import unload as unload_tracer

    require_root()
    path = pin_dir_default(pin_dir)
    report_unload(unload_tracer(path), path, "unloaded", "nothing loaded")


def report_unload(left: list[str] | None, path: Path, done: str, nothing: str) -> None:
    """What an unload did: nothing there, all removed, or what it left (not swatch's)."""
    if left is None:
        typer.echo(f"swatch: {nothing} at {path}")
    elif left:
        typer.echo(f"swatch: {done} (removed swatch's pins in {path}; left "
                   f"{', '.join(left)})")
    else:
        typer.echo(f"swatch: {done} (removed {path})")


RUN_HELP = (
    "Run CMD traced from its first syscall: swatch run [OPTIONS] -- CMD [ARGS...]\n\n"
    "As with strace, CMD's stdin, stdout and stderr stay CMD's own: the trace and the summary "
    "go to stderr (with --json, the summary is then a last JSON line of type \"summary\"); "
    "-o FILE sends the trace to FILE, `-o -` to stdout.\n\n"
    "If the trace's output fails (a closed pipe, a full disk), CMD runs on to its end; swatch "
    "says so once, stops writing and exits with CMD's exit code (128+N if signal N killed it)."
)


@commands.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                  help=RUN_HELP)
@user_errors
def run(
    ctx: typer.Context,
    filter: FilterOpt = None,
    syscalls_expr: SyscallsOpt = None,
    failed: FailedOpt = False,
    durations: DurationsOpt = False,
    t_count: TimestampsOpt = 0,
    relative: RelativeOpt = False,
    strsize: StringLimitOpt = 0,
    ancestry: AncestryOpt = False,
    json: JsonOpt = False,
    output: OutputOpt = None,
    stats_only: Annotated[bool, typer.Option(
        "--stats-only", "--count", "-c", help="Count in the kernel only and print the summary "
        "table; stream no events (strace -c).")] = False,
    follow_forks: FollowForksOpt = True,
    no_children: NoChildrenOpt = False,
    color: ColorOpt = ColorMode.auto,
    ring_size: RingSizeOpt = RUN_RING_SIZE,
    max_pids: MaxPidsOpt = None,
    stats_slots: StatsSlotsOpt = None,
    no_latency: NoLatencyOpt = False,
    memory: Annotated[Optional[str], typer.Option(
        "--memory", metavar="SIZE", help="Memory limit for CMD and its children (512M, 2G): a "
        "cgroup of the run; reaching it is an OOM kill, reported.")] = None,
    cpu: Annotated[Optional[str], typer.Option(
        "--cpu", metavar="PCT", help="CPU limit, 100% being one whole CPU (50%, 150%).")] = None,
    pids: Annotated[Optional[int], typer.Option(
        "--pids", metavar="N", help="At most N processes and threads at once (fork fails with "
        "EAGAIN beyond).")] = None,
    oom_score_adj: Annotated[Optional[int], typer.Option(
        "--oom-score-adj", metavar="N", help="CMD's oom_score_adj, -1000 to 1000.")] = None,
    policy: Annotated[Optional[str], typer.Option(
        "--policy", "-P", metavar="POLICY", help="Apply this policy (file or built-in name) to CMD before its "
        "exec, with Landlock and seccomp (no BPF hook needed).")] = None,
    require_preventive: Annotated[bool, typer.Option(
        "--require-preventive", help="With --policy: refuse to run if an operation cannot be "
        "held by Landlock or seccomp here.")] = False,
    seccomp: Annotated[str | None, typer.Option(
        "--seccomp", metavar="FILE", help="Apply this OCI seccomp profile (`swatch record`'s, "
        "Docker's) to CMD with libseccomp right before its exec; denials are DENIED lines "
        "(tier seccomp).")] = None,
    phase: Annotated[Optional[str], typer.Option(
        "--phase", metavar="NAME", help="With --policy: the phase of a policy with phases to "
        "apply (default: its first). Fixed for the run: Landlock and seccomp only tighten.")
    ] = None,
    tls: TlsOpt = False,
    tls_bytes: TlsBytesOpt = 16384,
    tls_lib: TlsLibOpt = None,
    agent: AgentOpt = False,
) -> None:
    """Run CMD traced from its first syscall (help: RUN_HELP)."""
    from syscall_watcher.trace.run import run_command
    from syscall_watcher.trace.view import ViewOptions

    tls_settings = tls_options(tls or agent, tls_bytes, tls_lib)

    view = ViewOptions(json=json, failed_only=failed, show_duration=durations, t_count=t_count,
                       relative=relative, strsize=strsize, ancestry=ancestry)
    raise typer.Exit(run_command(list(ctx.args), profile=filter, exprs=syscalls_expr, view=view,
                                 output=output, color=color.value, stats_only=stats_only,
                                 follow_children=not no_children, ring_size=ring_size,
                                 max_pids=max_pids or 0, stats_slots=stats_slots,
                                 limits=(memory, cpu, pids, oom_score_adj),
                                 policy=policy, require_preventive=require_preventive,
                                 seccomp=seccomp, phase=phase,
                                 tls=tls_settings, agent=agent, latency=not no_latency))


def tls_options(tls: bool, tls_bytes: int, tls_lib: list[str] | None):  # type: ignore[no-untyped-def]
    """--tls, --tls-bytes, --tls-lib as TlsSettings (None without --tls); checked here."""
    if not tls:
        if tls_lib or tls_bytes != 16384:
            raise SwatchError("--tls-bytes and --tls-lib go with --tls")
        return None
    from syscall_watcher.tls.probes import MAX_CAPTURE, TlsSettings

    if not 1 <= tls_bytes <= MAX_CAPTURE:
        raise SwatchError(f"--tls-bytes {tls_bytes}: give a number from 1 to {MAX_CAPTURE}")
    for path in tls_lib or ():
        if not os.path.isfile(path):
            raise SwatchError(f"--tls-lib {path}: no such file")
    return TlsSettings(capture_bytes=tls_bytes, libraries=tuple(tls_lib or ()))


@commands.command()
def profiles() -> None:
    """List the filter profiles and the syscalls each lets through."""
    from syscall_watcher.kernel import syscalls

    for name in syscalls.profile_names():
        names = sorted(syscalls.profile(name))
        shown = ", ".join(names) if len(names) <= 20 else f"{len(names)} syscalls"
        typer.echo(f"{name:8} {syscalls.profile_description(name)}\n         {shown}")
