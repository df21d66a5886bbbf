"""`swatch serve`: parse, build the log and the config, run serve/daemon.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from syscall_watcher.cli.errors import user_errors

commands = typer.Typer()


@commands.command()
@user_errors
def serve(
    json_log: Optional[Path] = typer.Option(
        None, "--json-log", metavar="FILE",
        help="Append every event and denial as JSON lines to FILE, rotated by rename "
             "(FILE.1, FILE.2 ...) when it would pass --json-log-max-bytes; SIGHUP reopens it."),
    json_log_max_bytes: int = typer.Option(
        100 << 20, "--json-log-max-bytes", metavar="N", help="Rotate FILE at this size."),
    json_log_keep: int = typer.Option(
        5, "--json-log-keep", metavar="N", help="Rotated files to keep (FILE.1 … FILE.N)."),
    metrics: Optional[str] = typer.Option(
        None, "--metrics", metavar="HOST:PORT",
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)."),
    pin_dir: Optional[Path] = typer.Option(
        None, "--pin-dir", help="The tracer's pins (default $SWATCH_PIN_DIR or "
                                "/sys/fs/bpf/syscall_watcher)."),
    policy_pin_dir: Optional[Path] = typer.Option(
        None, "--policy-pin-dir", help="The enforcer's pins (default $SWATCH_POLICY_PIN_DIR "
                                       "or /sys/fs/bpf/syscall_watcher_policy)."),
) -> None:
    """Run as the long-lived consumer of whatever is pinned: metrics, JSON-lines log.

    Follows `swatch load`/`unload` and `swatch policy load`/`unload` while it runs (and waits,
    saying so, while nothing is pinned). SIGTERM/SIGINT drain, fsync and exit 0.
    """
    from syscall_watcher.policy.enforcer import pin_dir_default as policy_pin_dir_default
    from syscall_watcher.serve.daemon import ServeConfig
    from syscall_watcher.serve.daemon import serve as run_serve
    from syscall_watcher.serve.jsonlog import RotatingJsonLog
    from syscall_watcher.serve.metrics import parse_address
    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.trace.tracer import pin_dir_default

    if metrics is not None:
        parse_address(metrics)  # a bad address is one line before anything opens
    require_root()
    log = RotatingJsonLog(json_log, json_log_max_bytes, json_log_keep) if json_log else None
    config = ServeConfig(tracer_pin_dir=pin_dir_default(pin_dir),
                         policy_pin_dir=policy_pin_dir_default(policy_pin_dir),
                         json_log=log, metrics=metrics, notices=sys.stderr)
    try:
        code = run_serve(config)
    finally:
        if log is not None:
            log.close()
    raise typer.Exit(code)
