"""Run confinement: `swatch cleanup` (the cgroups of runs whose swatch was killed outright), and
the stale-run sweep every command does first. `swatch run`'s limit and --policy options live with
`run` (cli/trace.py)."""

from __future__ import annotations

import os

import typer

from syscall_watcher.cli.errors import user_errors

commands = typer.Typer()


def sweep_stale_runs() -> None:
    """Remove the cgroups of runs whose swatch was killed outright (said on stderr)."""
    if os.geteuid() != 0:
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
