"""`swatch serve`: parse, check the options, run serve/daemon.py."""

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
    audit_dir: Path = typer.Option(
        Path("/var/lib/swatch/audit"), "--audit-dir", envvar="SWATCH_AUDIT_DIR",
        show_envvar=True, metavar="DIR",
        help="Append denials, gaps, loads/unloads and the --events kinds to the tamper-evident "
             "audit log in DIR (created 0700, with its signing key, on first start; "
             "`swatch audit verify` checks it)."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Write no audit log."),
    events: str = typer.Option(
        "denied", "--events", metavar="KINDS",
        help="What the audit log keeps besides denials: record types (exec, fork, exit, "
             "syscall; tls, http, llm with --tls; step, kept anyway with --agent) and system "
             "call names (connect: its syscall records), comma-separated."),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", metavar="N", help="Sign a checkpoint every N records..."),
    checkpoint_seconds: float = typer.Option(
        60.0, "--checkpoint-seconds", metavar="T",
        help="... or T seconds after the first record not signed yet (and at shutdown)."),
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
    detect_dir: Path = typer.Option(
        Path("/run/swatch/detect"), "--detect-dir", metavar="DIR",
        help="Where `swatch detect` publishes its last score per target (one JSON file each), "
             "shown as swatch_detect_score{target=...}."),
    tls: bool = typer.Option(
        False, "--tls", help="Also capture the traced processes' TLS plaintext (uprobes on "
                             "libssl/libgnutls, loaded with each tracer serve attaches to): "
                             "tls, http and llm records, secrets redacted."),
    agent: bool = typer.Option(
        False, "--agent", help="Steps (implies --tls): each tool call an LLM response names, "
                               "tied to the processes spawned for it; step records (start, and "
                               "a summary with its flags once the step is over) in the JSON "
                               "log and the audit log."),
    tls_bytes: int = typer.Option(
        16384, "--tls-bytes", metavar="N",
        help="Plaintext bytes copied per TLS call (1 to 65536; the rest is counted)."),
    tls_lib: Optional[list[str]] = typer.Option(
        None, "--tls-lib", metavar="PATH",
        help="Also probe this TLS library file (a bundled libssl or libgnutls); repeatable."),
    pin_dir: Optional[Path] = typer.Option(
        None, "--pin-dir", help="The tracer's pins (default $SWATCH_PIN_DIR or "
                                "/sys/fs/bpf/syscall_watcher)."),
    policy_pin_dir: Optional[Path] = typer.Option(
        None, "--policy-pin-dir", help="The enforcer's pins (default $SWATCH_POLICY_PIN_DIR "
                                       "or /sys/fs/bpf/syscall_watcher_policy)."),
) -> None:
    """Run as the long-lived consumer of whatever is pinned: audit log, metrics, JSON log.

    Follows `swatch load`/`unload` and `swatch policy load`/`unload` while it runs (and waits,
    saying so, while nothing is pinned). SIGTERM/SIGINT drain, fsync, sign a last checkpoint
    and exit 0; SIGHUP reopens the JSON log.
    """
    from syscall_watcher.cli.trace import tls_options
    from syscall_watcher.errors import SwatchError
    from syscall_watcher.kernel import syscalls
    from syscall_watcher.kernel.system import require_root
    from syscall_watcher.policy.enforcer import pin_dir_default as policy_pin_dir_default
    from syscall_watcher.serve.daemon import AuditOptions, ServeConfig
    from syscall_watcher.serve.daemon import serve as run_serve
    from syscall_watcher.serve.jsonlog import RotatingJsonLog
    from syscall_watcher.serve.metrics import parse_address
    from syscall_watcher.serve.sink import EventKinds
    from syscall_watcher.trace.tracer import pin_dir_default

    # Every option checked before anything opens: one line each.
    if metrics is not None:
        parse_address(metrics)
    tls_settings = tls_options(tls or agent, tls_bytes, tls_lib)
    kinds = EventKinds.parse(events, set(syscalls.names().values()), tls=tls, agent=agent)
    if tls_settings is not None and json_log is None and (
            no_audit or not kinds.types & {"tls", "http", "llm", "step"}):
        flag = "--agent" if agent else "--tls"
        raise SwatchError(f"{flag}: nothing would keep its records: give --json-log"
                          + ("" if no_audit else " or --events tls,http,llm"))
    if checkpoint_every < 1:
        raise SwatchError(f"--checkpoint-every {checkpoint_every}: give at least 1 record")
    if not checkpoint_seconds > 0:
        raise SwatchError(f"--checkpoint-seconds {checkpoint_seconds:g}: give more than 0")
    require_root()
    audit = None if no_audit else AuditOptions(audit_dir, checkpoint_every, checkpoint_seconds)
    log = RotatingJsonLog(json_log, json_log_max_bytes, json_log_keep) if json_log else None
    config = ServeConfig(tracer_pin_dir=pin_dir_default(pin_dir),
                         policy_pin_dir=policy_pin_dir_default(policy_pin_dir),
                         json_log=log, metrics=metrics, notices=sys.stderr, events=kinds,
                         detect_dir=detect_dir, tls=tls_settings, agent=agent)
    try:
        code = run_serve(config, audit)
    finally:
        if log is not None:
            log.close()
    raise typer.Exit(code)
