"""The command line: the typer app and one module per command group."""

from syscall_watcher.cli import detect as _detect  # noqa: F401 — registers `swatch detect`
from syscall_watcher.cli.app import app, main

__all__ = ["app", "main"]
