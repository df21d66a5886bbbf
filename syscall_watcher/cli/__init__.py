"""The command line: the typer app and one module per command group."""

from syscall_watcher.cli.app import app, main

__all__ = ["app", "main"]
