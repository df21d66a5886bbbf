"""Options more than one command takes, declared once (typer ``Annotated`` aliases).

A command writes ``json: JsonOpt = False`` and gets the same flag, help and checks as every
other command with --json. Short options follow strace where they overlap (-p, -f, -c, -e, -Z,
-T, -t, -r, -s, -o).
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from syscall_watcher.errors import SwatchError


class ColorMode(str, Enum):
    """--color: colour human lines when stdout is a terminal (auto), always or never."""

    auto = "auto"
    always = "always"
    never = "never"


# --- output --------------------------------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Machine-readable output: JSON, one object per line (fields in the README).")]
ColorOpt = Annotated[ColorMode, typer.Option(
    "--color", metavar="WHEN", help="auto | always | never")]
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", metavar="FILE", help="Write the trace to this file (`-o -`: stdout) "
    "instead of the command's usual stream (watch: stdout; run: stderr, as strace).")]

# --- pins ----------------------------------------------------------------------------------

# A str, not a Path: a Path would turn "" into "." (the current directory).
PinDirOpt = Annotated[str | None, typer.Option(
    "--pin-dir", metavar="DIR", envvar="SWATCH_PIN_DIR", show_envvar=True,
    help="bpffs directory for pins [default /sys/fs/bpf/syscall_watcher]")]
PolicyPinDirOpt = Annotated[str | None, typer.Option(
    "--pin-dir", metavar="DIR", envvar="SWATCH_POLICY_PIN_DIR", show_envvar=True,
    help="bpffs directory for the policy's pins [default /sys/fs/bpf/syscall_watcher_policy]")]
WatchPolicyPinDirOpt = Annotated[str | None, typer.Option(
    "--policy-pin-dir", metavar="DIR", envvar="SWATCH_POLICY_PIN_DIR", show_envvar=True,
    help="Where a loaded policy's pins are [default /sys/fs/bpf/syscall_watcher_policy]")]

# --- the kernel side -----------------------------------------------------------------------

RingSizeOpt = Annotated[int, typer.Option(
    "--ring-size", metavar="BYTES", help="Ring buffer bytes (a power of two, 4096 to 1 GiB).")]
MaxPidsOpt = Annotated[int | None, typer.Option(
    "--max-pids", metavar="N", help="Room for this many processes in the pid-keyed maps "
    "[default: the kernel's pid_max, at most 65536]; what does not fit is counted and shown "
    "(and a policy fails closed).")]
StatsSlotsOpt = Annotated[int | None, typer.Option(
    "--stats-slots", metavar="N", help="Processes counted at once in per-CPU slots (the fast "
    "path; slots x CPUs x 168 bytes, preallocated) [default: as many as fit in 8 MiB, at most "
    "4096]; more are counted exactly in a shared table, and said so.")]
NoLatencyOpt = Annotated[bool, typer.Option(
    "--no-latency", help="Count without measuring latency: one program at sys_exit, no clock "
    "read (as `syscount` without -L); every other counter is kept, the latency columns say "
    "'-' (null in JSON). No events: counting only.")]

# --- targets -------------------------------------------------------------------------------

PidOpt = Annotated[list[int] | None, typer.Option(
    "--pid", "-p", metavar="PID", help="This process and, by default, every process it forks "
    "from now on (`load`: repeat to trace several trees).")]
CommOpt = Annotated[str | None, typer.Option(
    "--comm", metavar="NAME", help="Every process with this command name.")]
UidOpt = Annotated[str | None, typer.Option(
    "--uid", metavar="USER", help="Every process of this user (name or number).")]
ContainerOpt = Annotated[str | None, typer.Option(
    "--container", metavar="REF", help="A container (name, ID or unique ID prefix).")]
# the policy commands have no -c (count) to clash with, and had this short form first
PolicyContainerOpt = Annotated[str | None, typer.Option(
    "--container", "-c", metavar="REF", help="A container (name, ID or unique ID prefix).")]
FollowForksOpt = Annotated[bool, typer.Option(
    "--follow-forks", "-f", help="Follow children (the default; as strace -f).")]
NoChildrenOpt = Annotated[bool, typer.Option(
    "--no-children", help="Do not follow children (`load`: with --pid only).")]

# --- what a trace shows (strace style) -----------------------------------------------------

FilterOpt = Annotated[str | None, typer.Option(
    "--filter", metavar="PROFILE", help="Filter profile: which syscalls become events (see "
    "`swatch profiles`) [default: default]")]
SyscallsOpt = Annotated[list[str] | None, typer.Option(
    "--syscalls", "-e", metavar="NAMES", help="Syscalls to show, strace style: openat,connect "
    "(only those), !read (all but), %file / %network / %process (classes); repeatable. Added "
    "to --filter when both are given. Names are checked against the kernel's table.")]
WatchSyscallsOpt = Annotated[list[str] | None, typer.Option(
    "--syscalls", "-e", metavar="NAMES", help="Show only these syscalls (strace style: "
    "openat,connect / !read / %file), of those the loaded filter emits.")]
FailedOpt = Annotated[bool, typer.Option(
    "--failed", "-Z", help="Show only syscalls that failed (strace -Z).")]
DurationsOpt = Annotated[bool, typer.Option(
    "-T", help="Show each syscall's duration, <seconds> at the end of the line.")]
TimestampsOpt = Annotated[int, typer.Option(
    "-t", count=True, help="Timestamps: -t HH:MM:SS, -tt with microseconds, -ttt seconds "
    "since the epoch (default HH:MM:SS.mmm).")]
RelativeOpt = Annotated[bool, typer.Option(
    "-r", help="Timestamps relative to the previous line, in seconds.")]
StringLimitOpt = Annotated[int, typer.Option(
    "--string-limit", "-s", min=0, metavar="N", help="Show at most N bytes of each string in "
    "human lines (paths, arguments), then \"...\"; 0: whole strings. JSON keeps them whole.")]
AncestryOpt = Annotated[bool, typer.Option(
    "--ancestry", help="Show the parent chain of each exec'd process on its EXEC line (JSON "
    "always has it).")]


def positive_seconds(option: str, value: float | None) -> None:
    """--duration and --interval: a finite number of seconds greater than zero."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SwatchError(f"{option} {value:g}: give a number of seconds greater than 0")


# --- TLS plaintext (--tls) -----------------------------------------------------------------

TlsOpt = Annotated[bool, typer.Option(
    "--tls", help="Also capture the plaintext of the traced processes' TLS traffic (uprobes on "
    "libssl/libgnutls): TLS, HTTP and LLM lines, secrets redacted. Off by default.")]
AgentOpt = Annotated[bool, typer.Option(
    "--agent", help="Steps (implies --tls): each tool call an LLM response names, tied to the "
    "processes spawned for it and what they read, wrote, ran and connected to; a STEP line "
    "each, JSON records carry \"step\", and a summary flags steps that did more than their "
    "tool call named.")]
TlsBytesOpt = Annotated[int, typer.Option(
    "--tls-bytes", metavar="N", help="Plaintext bytes copied per TLS call (1 to 65536; the "
    "rest is counted, not copied).")]
TlsLibOpt = Annotated[list[str] | None, typer.Option(
    "--tls-lib", metavar="PATH", help="Also probe this TLS library file (a bundled libssl or "
    "libgnutls); repeatable.")]
