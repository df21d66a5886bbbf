#!/usr/bin/env python3
"""Write swatch(1) in roff from the CLI itself (every command, option, default and
environment variable), so `man swatch` never disagrees with `--help`.

usage: gen_manpage.py OUT.1
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any

import typer

from syscall_watcher import __version__
from syscall_watcher.cli import app


def esc(text: str) -> str:
    """roff-safe text: backslashes, leading dots/quotes, dashes in option names."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def option_lines(param: Any, ctx: Any) -> list[str]:
    """An option as --help shows it (names, metavar, help, default, env var), in roff."""
    record = param.get_help_record(ctx)
    if record is None:
        return []
    names, text = record
    return [".TP", "\\fB" + esc(names) + "\\fR", esc(" ".join(text.split()))]


def commands(group: Any, ctx: Any, path: str) -> list[str]:
    """Every visible command under ``group`` (a group's commands after its own line), with
    its options, as --help shows them."""
    out: list[str] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out += [".SS " + esc(f"{path} {name}"), esc((cmd.help or "").strip())]
        cmd_ctx = typer.Context(cmd, info_name=name, parent=ctx)
        for param in cmd.params:
            if hasattr(param, "get_help_record") and not getattr(param, "hidden", False):
                out += option_lines(param, cmd_ctx)
        out += option_lines(cmd.get_help_option(cmd_ctx), cmd_ctx)
        if hasattr(cmd, "list_commands"):
            out += commands(cmd, cmd_ctx, f"{path} {name}")
    return out


def render() -> str:
    group = typer.main.get_command(app)
    date = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or datetime.datetime.now().timestamp(),
        datetime.timezone.utc).strftime("%Y-%m-%d")
    out = [
        f'.TH SWATCH 1 "{date}" "swatch {__version__}" "User Commands"',
        ".SH NAME",
        "swatch \\- " + esc((group.help or "").split("—", 1)[-1].strip()),
        ".SH SYNOPSIS",
        "\\fBswatch\\fR [\\fB\\-h\\fR] [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        "\\fBswatch run\\fR [\\fIOPTIONS\\fR] \\fB\\-\\-\\fR \\fICMD\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        esc("swatch traces the syscalls of a process tree, a user, a command name or a "
            "container with eBPF, and can enforce policies on them. Short options follow "
            "strace where they overlap: -f follows forks, -c counts, -e picks syscalls, "
            "-Z shows failed calls, -T durations, -t/-tt/-ttt/-r timestamps, -s string "
            "length, -p PID (repeatable), -o FILE."),
        ".SH COMMANDS",
    ]
    ctx = typer.Context(group)
    out += commands(group, ctx, "swatch")
    aliases = group.aliases(ctx) if hasattr(group, "aliases") else {}
    if aliases:
        out += [".SS " + esc("Old spellings"),
                esc("The commands of a group are also accepted the old, flat way:")]
        for alias, (grp, sub) in aliases.items():
            out += [".TP", "\\fB" + esc(f"swatch {alias}") + "\\fR",
                    esc(f"the same as swatch {grp} {sub}")]
    out += [
        ".SH ENVIRONMENT",
        ".TP", "\\fBSWATCH_PIN_DIR\\fR", esc("bpffs directory of the tracer's pins "
                                             "(--pin-dir)."),
        ".TP", "\\fBSWATCH_POLICY_PIN_DIR\\fR", esc("bpffs directory of the policy's pins."),
        ".TP", "\\fBSWATCH_AUDIT_DIR\\fR", esc("the audit log's directory (--audit-dir of "
                                               "`swatch audit`)."),
        ".TP", "\\fBNO_COLOR\\fR", esc("no colours in human lines (as --color never)."),
        ".SH EXIT STATUS",
        esc("0 on success, 1 on an error (one line on stderr). `swatch run` exits with CMD's "
            "status, 128+N when signal N killed it."),
        ".SH SEE ALSO",
        "\\fBstrace\\fR(1), \\fBbpftool\\fR(8)",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], "w") as f:
        f.write(render())


if __name__ == "__main__":
    main()
