"""The command line: the root app (app.py) and one module per command group.

    app.py       the root `swatch`, the entry point, and one registration line per group
    groups.py    help in sections; the old flat spellings (`policy-load` = `policy load`)
    options.py   the options several commands share, declared once (typer Annotated aliases)
    errors.py    a mistake is one red line and a non-zero exit
    trace.py     load, watch, status, summary, unload, run, profiles (top level)
    policy.py    swatch policy load | summary | unload
    targets.py   containers
    detect.py    detect (top level: is this workload an AI agent?)
    sandbox.py   record (a seccomp profile from a run), cleanup (and the stale-run sweep)
    serve.py     serve (metrics, the JSON log; the long-running consumer)
    audit.py     swatch audit init | verify | show | tail | prove | check-proof | repair …

Add a group: write cli/NAME.py with ``app = typer.Typer(name="NAME", ...)`` and its commands,
then add one line to ``SwatchGroup.lazy`` in app.py:
``Lazy("syscall_watcher.cli.NAME:app", ("NAME",), "Title", group=True)``. A module is imported
only when one of its commands runs (or for `swatch --help` and completion).
"""

from syscall_watcher.cli.app import app, main

__all__ = ["app", "main"]
