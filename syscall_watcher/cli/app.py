"""`swatch`: the root command, its command groups, and the entry point.

Each command group is one module under cli/ that builds a ``typer.Typer`` and knows nothing of
the others; this file registers each with ONE line:

    add_commands(trace.commands, "Trace")   # top-level commands: swatch load, swatch watch …
    app.add_typer(policy.app, rich_help_panel="Policy")   # a group: swatch policy load …

A group built with ``typer.Typer(name=..., cls=HyphenAliasedGroup)`` also answers to the flat
spellings (`swatch policy-load`); new groups (detect, audit, sandbox, serve) need not.
Commands stay thin: parse options (cli/options.py declares the shared ones), call one thing in
trace/, policy/ or targets/, print.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - older typer on the system click
    from click.exceptions import ClickException  # type: ignore[no-redef]

    try:  # click >= 8.2
        from click.exceptions import NoArgsIsHelpError  # type: ignore[no-redef]
    except ImportError:  # older click prints the help itself and raises nothing
        class NoArgsIsHelpError(ClickException):  # type: ignore[no-redef]
            """Never raised by this click."""

from syscall_watcher import __version__
from syscall_watcher.cli import audit, detect, policy, sandbox, serve, targets, trace
from syscall_watcher.cli.errors import error_line
from syscall_watcher.cli.groups import RootGroup

app = typer.Typer(
    cls=RootGroup,
    no_args_is_help=True,
    # Plain click help: typer's rich panels print a `<bool>` type after every flag.
    rich_markup_mode=None,
    help="swatch — watch (and limit) what a process tree or container does, with eBPF.",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"swatch {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version,
                                 is_eager=True, help="Print swatch's version and exit."),
) -> None:
    """swatch — watch (and limit) what a process tree or container does, with eBPF."""
    if ctx.invoked_subcommand != "cleanup":
        sandbox.sweep_stale_runs()


def add_commands(group: typer.Typer, section: str) -> None:
    """Register a module's commands at the top level (`swatch NAME`), under ``section`` in
    `swatch --help`."""
    for info in group.registered_commands:
        info.rich_help_panel = section
        app.registered_commands.append(info)


add_commands(trace.commands, "Trace")
app.add_typer(policy.app, rich_help_panel="Policy")
app.add_typer(audit.audit_app, name="audit", rich_help_panel="Audit")
add_commands(targets.commands, "Targets")
add_commands(sandbox.commands, "Sandbox")
add_commands(serve.commands, "Serve")
add_commands(detect.commands, "Detect")


@app.command(rich_help_panel="Other")
def version() -> None:
    """Print swatch's version."""
    typer.echo(f"swatch {__version__}")


def main() -> None:
    """The `swatch` entry point: a usage mistake is one line too (click's own messages)."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as err:  # `swatch`, `swatch policy`: the help, as click shows it
        err.show()
        sys.exit(err.exit_code)
    except ClickException as err:
        if not err.format_message():
            sys.exit(err.exit_code)
        hint = ""
        ctx = getattr(err, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        error_line(f"{err.format_message()}{hint}")
        sys.exit(err.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
