"""The command line: the typer app and one module per command group."""

from syscall_watcher.cli.app import app, main
from syscall_watcher.cli.audit import audit_app

app.add_typer(audit_app, name="audit")

__all__ = ["app", "main"]
