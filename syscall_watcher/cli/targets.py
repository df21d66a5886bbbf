"""What can be watched: `swatch containers` (the running containers swatch can see)."""

from __future__ import annotations

import typer

from syscall_watcher.cli.errors import user_errors
from syscall_watcher.cli.options import JsonOpt

commands = typer.Typer()


@commands.command()
@user_errors
def containers(json: JsonOpt = False) -> None:
    """The running containers swatch can see: runtime, ID, name, cgroup."""
    import json as jsonlib

    from syscall_watcher.targets.containers import (
        DOCKER_SDK_MISSING,
        docker_sdk_missing,
        list_containers,
    )

    found = list_containers()
    if docker_sdk_missing():
        typer.echo(f"swatch: note: {DOCKER_SDK_MISSING}; Docker's names are not shown", err=True)
    if json:
        typer.echo(jsonlib.dumps([c.as_json() for c in found]))
        return
    if not found:
        typer.echo("swatch: no running containers found")
        return
    typer.echo(f"{'RUNTIME':11} {'ID':12}  {'NAME':24} CGROUP")
    for c in found:
        typer.echo(f"{c.runtime:11} {c.short_id:12}  {c.name[:24]:24} {c.cgroup_path}")
