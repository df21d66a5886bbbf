"""`swatch detect`: is this workload an AI agent? Parse, call syscall_watcher.detect, print."""

from __future__ import annotations

import json as jsonlib
import sys
from typing import TYPE_CHECKING, Optional

import typer

from syscall_watcher.cli.errors import user_errors
from syscall_watcher.cli.options import PinDirOpt
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.system import require_root
from syscall_watcher.targets.resolve import resolve_target
from syscall_watcher.targets.target import Target
from syscall_watcher.trace.tracer import pin_dir_default

if TYPE_CHECKING:  # imported by the commands that run: not by every swatch command
    from syscall_watcher.detect.observe import Observation
    from syscall_watcher.detect.run import Source

commands = typer.Typer()

DETECT_HELP = (
    "Score how much a process tree, a container or a command behaves like an AI agent "
    "(0-100), from counters kept in the kernel: swatch detect [--pid PID | --container NAME | "
    "--all] [OPTIONS], or swatch detect [OPTIONS] -- CMD [ARGS...].\n\n"
    "With no target, it observes the target of the tracer `swatch load` pinned. The window is "
    "--samples intervals of --interval seconds; Ctrl-C or SIGTERM ends it early with a partial "
    "score. docs/detect.md gives each signal's formula."
)


@commands.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             help=DETECT_HELP)
@user_errors
def detect(
    ctx: typer.Context,
    pid: Optional[int] = typer.Option(None, "--pid", "-p", help="Observe this process and "
                                      "everything it forks."),
    container: Optional[str] = typer.Option(None, "--container", help="Observe a container "
                                            "(name, ID or unique ID prefix)."),
    all_trees: bool = typer.Option(False, "--all", help="Score every process tree (session) on "
                                   "the machine and rank them."),
    samples: int = typer.Option(10, "--samples", "-n", help="Samples in the window (2 or more "
                                "for the burst pattern)."),
    interval: float = typer.Option(3.0, "--interval", "-i", help="Seconds between samples."),
    watch: bool = typer.Option(False, "--watch", help="Re-score window after window, one line "
                               "each, until interrupted or the target is gone."),
    top: int = typer.Option(10, "--top", help="With --all: how many trees to show."),
    json: bool = typer.Option(False, "--json", help="One JSON object per window "
                              "(the schema's detect_doc, README \"JSON lines\")."),
    pin_dir: PinDirOpt = None,
) -> None:
    """Score how much a process tree, a container or a command behaves like an AI agent
    (help: DETECT_HELP)."""
    from syscall_watcher.detect import render, run

    argv = list(ctx.args)
    chosen = [n for n, v in (("--pid", pid is not None), ("--container", container is not None),
                             ("--all", all_trees), ("-- CMD", bool(argv))) if v]
    if len(chosen) > 1:
        raise SwatchError(f"choose one target, not {' and '.join(chosen)}")
    run.check_window(samples, interval)
    if top < 1:
        raise SwatchError(f"--top {top}: show at least 1 tree")
    require_root()
    if argv:
        src = run.from_command(argv)
    elif pid is not None or container is not None:
        src = run.from_target(resolve_target(pid, container=container))
    elif all_trees:
        src = run.from_target(Target(mode="all", label="every process tree"))
    else:
        src = run.from_pins(pin_dir_default(pin_dir))
    stopped = 0
    try:
        with run.stop_on_signals() as stop:
            obs = None
            while True:
                progress = (render.Progress(sys.stderr, samples * interval)
                            if sys.stderr.isatty() else None)
                obs = run.run_window(src, samples, interval, stop, progress, after=obs)
                if progress:
                    progress.clear()
                _print(obs, src, all_trees, top, json, watch)
                if not watch or obs.interrupted or obs.target_exited:
                    break
            stopped = stop.signum
    finally:
        src.close()
    if src.child and not stopped:
        _report_child(src.child)
    if stopped:
        raise typer.Exit(128 + stopped)


def _print(obs: Observation, src: Source, all_trees: bool, top: int, json: bool,
           watch: bool) -> None:
    from syscall_watcher.detect import render, run

    if all_trees:
        ranked = run.score_trees(obs, top)
        if json:
            typer.echo(jsonlib.dumps({
                "window_s": round(obs.seconds, 3), "samples": len(obs.snapshots) - 1,
                "partial": obs.interrupted,
                "trees": [{"kind": t.kind, "session": t.session or None,
                           "container": ({"id": t.container_id, "name": t.container_name}
                                         if t.kind == "container" else None),
                           "processes": n, **r.as_dict()}
                          for t, n, r in ranked]}))
        else:
            typer.echo(render.ranking(ranked), nl=False)
        return
    result = run.score_target(obs, src.label)
    if json:
        typer.echo(jsonlib.dumps(result.as_dict()))
    elif watch:
        typer.echo(render.one_line(result))
    else:
        typer.echo(render.render(result), nl=False)


def _report_child(pid: int) -> None:
    """-- CMD outlived the window: it keeps running (swatch does not end it); say so."""
    import os

    try:
        wpid, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if not wpid:
        typer.echo(f"swatch: the command (pid {pid}) keeps running; the window is over",
                   err=True)
