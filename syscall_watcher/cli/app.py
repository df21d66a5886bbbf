"""`swatch`: the root command, its command groups, and the entry point.

Each command group is one module under cli/ that builds a ``typer.Typer`` and knows nothing of
the others; this file registers each with ONE line in ``SwatchGroup.lazy``, naming the module
and the commands it defines, which it imports only when one of them is used (`swatch run`
imports neither the audit log nor the policy compiler):

    Lazy("syscall_watcher.cli.trace:commands", ("load", "watch", …), "Trace")  # swatch load …
    Lazy("syscall_watcher.cli.policy:app", ("policy",), "Policy", group=True)  # swatch policy load …

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
from syscall_watcher.cli import coerce
from syscall_watcher.cli.errors import error_line
from syscall_watcher.cli.groups import Lazy, RootGroup

coerce.install()  # typer's option parsing without pydantic for plain values (cli/coerce.py)


class SwatchGroup(RootGroup):
    """`swatch`'s commands, by the module that defines them (in `swatch --help`'s order)."""

    lazy = (
        Lazy("syscall_watcher.cli.trace:commands",
             ("load", "watch", "status", "summary", "unload", "run", "profiles"), "Trace"),
        Lazy("syscall_watcher.cli.targets:commands", ("containers",), "Targets"),
        Lazy("syscall_watcher.cli.sandbox:commands", ("cleanup", "record"), "Sandbox"),
        Lazy("syscall_watcher.cli.serve:commands", ("serve",), "Serve"),
        Lazy("syscall_watcher.cli.detect:commands", ("detect",), "Detect"),
        Lazy("syscall_watcher.cli.policy:app", ("policy",), "Policy", group=True),
        Lazy("syscall_watcher.cli.audit:audit_app", ("audit",), "Audit", group=True),
    )


app = typer.Typer(
    cls=SwatchGroup,
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
        from syscall_watcher.cli.sandbox import sweep_stale_runs

        sweep_stale_runs()


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
