"""Run confinement: `swatch record` (an OCI seccomp profile and a draft policy from a run),
`swatch cleanup` (the cgroups of runs whose swatch was killed outright), and
the stale-run sweep every command does first. `swatch run`'s limit and --policy options live with
`run` (cli/trace.py)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from syscall_watcher.cli.errors import user_errors

commands = typer.Typer()


def sweep_stale_runs() -> None:
    """Remove the cgroups of runs whose swatch was killed outright (said on stderr)."""
    if os.geteuid() != 0:
        return
    from syscall_watcher.sandbox import RUNS_DIR

    try:  # no run recorded (the usual case): nothing to sweep, and the sweeper not imported
        if not any(RUNS_DIR.glob("*.json")):
            return
    except OSError:
        return
    from syscall_watcher.sandbox.cgroups import sweep_stale

    try:
        for line in sweep_stale():
            typer.echo(f"swatch: note: {line}", err=True)
    except OSError as err:
        typer.echo(f"swatch: note: cannot check for stale run cgroups: {err}", err=True)


@commands.command()
@user_errors
def cleanup() -> None:
    """Remove the run cgroups a killed swatch left, ending the processes still in them."""
    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.sandbox.cgroups import sweep_stale

    require_root()
    lines = sweep_stale(end_processes_too=True)
    for line in lines:
        typer.echo(f"swatch: {line}")
    if not lines:
        typer.echo("swatch: no stale run cgroups")


RECORD_HELP = (
    "Record what a run does, as an OCI seccomp profile and a draft policy: swatch record -o "
    "FILE [--pid N | --container NAME] [--duration S] [-- CMD ARGS...]\n\n"
    "The profile (for `docker run --security-opt seccomp=FILE` or `swatch run --seccomp FILE`) "
    "allows the syscalls the traced tree made — from the kernel's own per-syscall counts, "
    "exact whatever the event load — plus what the container runtime (runc) needs before the "
    "entrypoint starts; everything else fails with EPERM. The draft policy (FILE with the "
    "suffix .policy, or --policy-out) denies what the run did not do, for `swatch policy load "
    "--audit-only`. With CMD, exits with CMD's exit code."
)


@commands.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                  help=RECORD_HELP)
@user_errors
def record(
    ctx: typer.Context,
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the seccomp profile (JSON) here.")],
    policy_out: Annotated[str | None, typer.Option(
        "--policy-out", metavar="FILE", help="Write the draft policy here (default: the "
        "profile's name with .policy).")] = None,
    pid: Annotated[int | None, typer.Option(
        "--pid", "-p", metavar="PID", help="Record a running process tree instead of "
        "CMD.")] = None,
    container: Annotated[str | None, typer.Option(
        "--container", metavar="NAME", help="Record a running container (name, ID or "
        "prefix).")] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", metavar="SECONDS", help="With --pid/--container: stop after this many "
        "seconds (else at Ctrl-C or when the target ends).")] = None,
    args: Annotated[bool, typer.Option(
        "--args", help="Narrow socket to the address families seen and clone to the flags "
        "seen (argument filters).")] = False,
    runtime_syscalls: Annotated[bool, typer.Option(
        "--runtime-syscalls/--no-runtime-syscalls", help="Add what runc needs between "
        "installing the filter and exec'ing the entrypoint (the default).")] = True,
) -> None:
    """Record what a run does, as an OCI seccomp profile and a draft policy (help: RECORD_HELP)."""
    from syscall_watcher.cli.options import positive_seconds
    from syscall_watcher.errors import SwatchError
    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.sandbox import oci
    from syscall_watcher.sandbox import record as rec
    from syscall_watcher.trace.run import exit_code_for_shell

    argv = list(ctx.args)
    positive_seconds("--duration", duration)
    if argv and (pid is not None or container is not None):
        raise SwatchError("give CMD or --pid/--container, not both")
    if not argv and pid is None and container is None:
        raise SwatchError("nothing to record: swatch record -o FILE -- CMD [ARGS...] (or --pid, "
                          "--container)")
    if argv and duration is not None:
        raise SwatchError("--duration goes with --pid or --container (CMD runs to its end)")
    policy_path = policy_out or rec.default_policy_path(output)
    if os.path.abspath(policy_path) == os.path.abspath(output):
        raise SwatchError(f"--policy-out {policy_path} is the profile's own file")
    rec.check_outputs(output, policy_path)
    oci.architectures()  # a machine with no known seccomp architecture: say so first
    require_root()
    if argv:
        obs = rec.observe_command(argv)
    else:
        from syscall_watcher.targets.resolve import resolve_target

        obs = rec.observe_target(resolve_target(pid, None, None, container), duration)
    recording = rec.make_profile(obs, with_args=args, runtime=runtime_syscalls)
    rec.write_atomically(output, oci.dumps(recording.profile))
    rec.write_atomically(policy_path, recording.policy)
    ended = "" if obs.exit_code is None else f", exit {exit_code_for_shell(obs.exit_code)}"
    typer.echo(f"swatch: recorded {obs.what}{ended}: {recording.seen} syscalls → {output}",
               err=True)
    if recording.runtime_added:
        typer.echo(f"swatch: + {len(recording.runtime_added)} the container runtime needs "
                   f"before the entrypoint ({', '.join(recording.runtime_added)}); "
                   "--no-runtime-syscalls leaves them out", err=True)
    for note in recording.notes:
        typer.echo(f"swatch: {note}", err=True)
    if obs.dropped:
        typer.echo(f"swatch: WARNING: {obs.dropped} events dropped: the draft policy's lists "
                   "may be incomplete (the profile is not: it comes from in-kernel counts)",
                   err=True)
    typer.echo(f"swatch: draft policy → {policy_path} (try: swatch policy load --audit-only "
               f"--policy {policy_path})", err=True)
    if obs.exit_code is not None:
        raise typer.Exit(exit_code_for_shell(obs.exit_code))
