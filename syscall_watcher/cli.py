"""The `swatch` command line: parse, call the core, print. No BPF logic here."""

from __future__ import annotations

import functools
import json as jsonlib
import os
import pwd
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from . import __version__, syscalls
from .errors import SwatchError
from .stream import Streamer
from .tracer import (
    DEFAULT_RING_SIZE,
    MODE_NAMES,
    MODE_IDS,
    PinnedSession,
    Target,
    load_pinned,
    membership_warnings,
    pin_dir_default,
    pin_state,
    pin_status,
    require_root,
)

app = typer.Typer(
    no_args_is_help=True,
    # Plain click help: typer's rich panels print a `<bool>` type after every flag.
    rich_markup_mode=None,
    help="swatch — watch (and limit) what a process tree or container does, with eBPF.",
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

# parser=str keeps the raw text: a Path would turn "" into "." (the current directory).
PinDir = typer.Option(None, "--pin-dir", parser=str,
                      help="bpffs directory for pins [env SWATCH_PIN_DIR; "
                      "default /sys/fs/bpf/syscall_watcher]")


PolicyPinDir = typer.Option(None, "--pin-dir", parser=str,
                            help="bpffs directory for the policy's pins [env "
                            "SWATCH_POLICY_PIN_DIR; default /sys/fs/bpf/syscall_watcher_policy]")


def _policy_pin_dir(value: Optional[str | Path]) -> Path:
    from .enforcer import pin_dir_default as policy_pin_dir_default

    return policy_pin_dir_default(value)


def user_errors(fn: F) -> F:
    """A SwatchError becomes one red line on stderr and exit status 1 — never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SwatchError as err:
            typer.secho(f"swatch: error: {err}", fg="red", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _pin_dir(value: Optional[str | Path]) -> Path:
    return pin_dir_default(value)


def _use_color(mode: str, stream: Any) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


MaxPids = typer.Option(None, "--max-pids", help="Room for this many processes in the "
                       "pid-keyed maps [default: the kernel's pid_max, at most 65536]; what "
                       "does not fit is counted and shown (and a policy fails closed).")


def _target(pid: Optional[int], comm: Optional[str], uid: Optional[str], no_children: bool,
            container: Optional[str] = None, max_pids: Optional[int] = None) -> Target:
    chosen = [n for n, v in (("--pid", pid), ("--comm", comm), ("--uid", uid),
                             ("--container", container)) if v is not None]
    if len(chosen) > 1:
        raise SwatchError(f"choose one target, not {' and '.join(chosen)}")
    if max_pids is not None and not 1 <= max_pids <= 1 << 22:
        raise SwatchError(f"--max-pids {max_pids}: choose 1 to {1 << 22}")
    target = _target_of(pid, comm, uid, no_children, container)
    target.max_pids = max_pids or 0
    return target


def _target_of(pid: Optional[int], comm: Optional[str], uid: Optional[str], no_children: bool,
               container: Optional[str]) -> Target:
    from .process import resolve_pid

    if pid is not None:
        resolved = resolve_pid(pid)
        if resolved.notice:
            typer.echo(resolved.notice, err=True)
        pid = resolved.pid
        return Target(mode="pid", pid=pid, follow_children=not no_children, label=f"pid {pid}")
    if comm is not None:
        if not comm or len(comm.encode()) > 15:
            raise SwatchError(f"--comm {comm!r}: a command name is 1 to 15 bytes (the kernel's "
                              "TASK_COMM_LEN)")
        return Target(mode="comm", comm=comm, label=f"comm {comm}")
    if uid is not None:
        if uid.isdigit():
            n = int(uid)
        else:
            try:
                n = pwd.getpwnam(uid).pw_uid
            except KeyError:
                raise SwatchError(f"no such user: {uid}") from None
        return Target(mode="uid", uid=n, label=f"uid {n}")
    if container is not None:
        from .containers import cgroup_v2_root, resolve_container

        c = resolve_container(container)
        level = len(Path(c.cgroup_path).relative_to(cgroup_v2_root()).parts)
        return Target(mode="cgroup", cgroup_id=c.cgroup_id, cgroup_level=level,
                      cgroup_path=c.cgroup_path, label=f"container {c.short_id} ({c.name})")
    return Target(mode="all", label="system-wide")


@app.command()
@user_errors
def load(
    pid: Optional[int] = typer.Option(None, "--pid", "-p", help="Trace this process and, by "
                                      "default, every process it forks from now on."),
    comm: Optional[str] = typer.Option(None, "--comm", help="Trace every process with this "
                                       "command name."),
    uid: Optional[str] = typer.Option(None, "--uid", help="Trace every process of this user "
                                      "(name or number)."),
    container: Optional[str] = typer.Option(None, "--container", "-c", help="Trace a container "
                                            "(name, ID or unique ID prefix)."),
    filter: str = typer.Option("default", "--filter", "-f", help="Filter profile: which "
                               "syscalls become events (see `swatch profiles`)."),
    no_children: bool = typer.Option(False, "--no-children", help="With --pid: do not follow "
                                     "children."),
    ring_size: int = typer.Option(DEFAULT_RING_SIZE, "--ring-size", help="Ring buffer bytes "
                                  "(a power of two)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a tracer already loaded."),
    max_pids: Optional[int] = MaxPids,
    pin_dir: Optional[Path] = PinDir,
) -> None:
    """Load the tracer, pin it under bpffs and return; tracing goes on without us."""
    require_root()
    syscalls.profile(filter)
    target = _target(pid, comm, uid, no_children, container, max_pids)
    start = time.monotonic()
    path = load_pinned(target, filter, _pin_dir(pin_dir), ring_size, replace=replace)
    typer.echo(f"swatch: tracing {target.label} (filter {filter}), pinned in {path} "
               f"[{(time.monotonic() - start) * 1000:.0f} ms]. `swatch watch` to see events, "
               "`swatch unload` to stop.")


@app.command()
@user_errors
def watch(
    json: bool = typer.Option(False, "--json", help="One JSON object per line (schema in the "
                              "README)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write events to this "
                                          "file instead of stdout."),
    color: str = typer.Option("auto", "--color", help="auto | always | never"),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many "
                                             "seconds."),
    pin_dir: Optional[Path] = PinDir,
    policy_pin_dir: Optional[Path] = typer.Option(
        None, "--policy-pin-dir", parser=str, help="Where a loaded policy's pins are [env "
        "SWATCH_POLICY_PIN_DIR; default /sys/fs/bpf/syscall_watcher_policy]"),
) -> None:
    """Stream the loaded tracer's events, and a loaded policy's denials, until Ctrl-C."""
    from .enforcer import POLICY, DenialStreamer, PinnedPolicy, policy_status

    require_root()
    tracer_dir = _pin_dir(pin_dir)
    policy_dir = _policy_pin_dir(policy_pin_dir)
    policy_state = POLICY.status(policy_dir)
    policy_problem = POLICY.problem(policy_dir, policy_state)
    if policy_problem and pin_status(tracer_dir) == "absent":
        raise SwatchError(policy_problem)
    if policy_problem:
        typer.echo(f"swatch: not showing denials: {policy_problem}", err=True)
    policy = PinnedPolicy.open(policy_dir) if policy_state.loaded else None
    session = None
    out = None
    try:
        if policy is None or pin_status(tracer_dir) != "absent":
            session = PinnedSession.open(tracer_dir)
        out = open(output, "wb") if output else sys.stdout.buffer
        use_color = not json and output is None and _use_color(color, sys.stdout)
        denials = (DenialStreamer(policy, out, json_lines=json, color=use_color,
                                  notices=sys.stderr) if policy is not None else None)
        end = time.monotonic() + duration if duration else None
        try:
            if session is None:
                assert denials is not None
                try:
                    while end is None or time.monotonic() < end:
                        denials.pump(100)
                        if policy_status(policy_dir) != "loaded":
                            typer.echo("swatch: the policy was unloaded", err=True)
                            break
                except KeyboardInterrupt:
                    pass
                denials.finish()
                return
            meta = session.meta()
            cgroup_path = ffi_str(meta.cgroup_path)
            if meta.mode == MODE_IDS["cgroup"]:
                label_container_cgroups(cgroup_path, ffi_str(meta.target_label))
            with Streamer(session, out, json=json, color=use_color, notices=sys.stderr) as s:
                container_gone = False
                try:
                    while end is None or time.monotonic() < end:
                        s.pump(100)
                        if denials is not None:
                            denials.pump(0)
                        if not pin_dir_alive(tracer_dir):
                            typer.echo("swatch: the tracer was unloaded", err=True)
                            break
                        if cgroup_path and not container_gone and not os.path.isdir(cgroup_path):
                            container_gone = True
                            typer.echo(f"swatch: {ffi_str(meta.target_label)} has exited; its "
                                       "counts are kept (`swatch status`)", err=True)
                except KeyboardInterrupt:
                    pass
                s.finish()
                if denials is not None:
                    denials.finish()
        finally:
            if denials is not None:
                denials.close()
    finally:
        if output and out is not None:
            out.close()
        if session is not None:
            session.close()
        if policy is not None:
            policy.close()


def label_container_cgroups(cgroup_path: str, label: str) -> None:
    """Events from the container's cgroup (and those below it) carry its short ID and name."""
    from .libbpf import set_cgroup_label

    short = label.removeprefix("container ")
    for d, _, _ in os.walk(cgroup_path):
        try:
            set_cgroup_label(os.stat(d).st_ino, short)
        except OSError:
            pass


def pin_dir_alive(path: Path) -> bool:
    return (path / "links").is_dir()


@app.command()
@user_errors
def unload(pin_dir: Optional[Path] = PinDir) -> None:
    """Detach and remove everything `swatch load` pinned. Safe to run twice."""
    from .tracer import unload as unload_tracer

    require_root()
    path = _pin_dir(pin_dir)
    _report_unload(unload_tracer(path), path, "unloaded", "nothing loaded")


def _report_unload(left: Optional[list[str]], path: Path, done: str, nothing: str) -> None:
    if left is None:
        typer.echo(f"swatch: {nothing} at {path}")
    elif left:
        typer.echo(f"swatch: {done} (removed swatch's pins in {path}; left "
                   f"{', '.join(left)})")
    else:
        typer.echo(f"swatch: {done} (removed {path})")


@app.command()
@user_errors
def status(
    json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    pin_dir: Optional[Path] = PinDir,
) -> None:
    """What is loaded: target, filter, traced pids, event and drop counters."""
    require_root()
    path = _pin_dir(pin_dir)
    if pin_state(path).state == "absent":
        if json:
            typer.echo(jsonlib.dumps({"loaded": False, "pin_dir": str(path)}))
        else:
            typer.echo(f"swatch: nothing loaded at {path}")
        return
    session = PinnedSession.open(path)  # unless loaded: why not, in one line
    try:
        meta = session.meta()
        counters = session.counters()
        streaming, consumer = session.state()
        info = {
            "loaded": True,
            "pin_dir": str(path),
            "target": ffi_str(meta.target_label),
            "mode": MODE_NAMES.get(meta.mode, "?"),
            "filter": ffi_str(meta.profile),
            "loaded_at": time.strftime("%Y-%m-%d %H:%M:%S",
                                       time.localtime(meta.load_time_ns / 1e9)),
            "pids": session.pids() if meta.mode == MODE_IDS["pid"] else [],
            "ring_size": int(meta.ring_size),
            "watching": consumer if streaming else None,
            "events_emitted": counters.emitted,
            "events_dropped": counters.dropped,
            "syscalls_counted": sum(int(s["count"]) for s in session.syscall_stats().values()),
            "max_pids": int(meta.max_pids),
            "pid_filter_full": counters.pid_filter_full,
            "pid_stats_full": counters.pid_stats_full,
            "untracked": counters.untracked,
        }
    finally:
        session.close()
    if json:
        typer.echo(jsonlib.dumps(info))
        return
    typer.echo(f"swatch: loaded at {info['pin_dir']} since {info['loaded_at']}")
    typer.echo(f"  target     {info['target']} (filter {info['filter']})")
    if info["pids"]:
        typer.echo(f"  traced     {len(info['pids'])} process(es): "
                   + " ".join(map(str, info["pids"][:20])))
    typer.echo(f"  watching   {'pid ' + str(consumer) if streaming else 'no consumer attached'}")
    typer.echo(f"  syscalls   {info['syscalls_counted']:,} counted")
    typer.echo(f"  events     {counters.total_emitted:,} emitted, {counters.total_dropped:,} "
               "dropped (ring buffer full)")
    for line in membership_warnings(counters, int(meta.max_pids)):
        typer.secho(f"  WARNING    {line}", fg="red", err=False)




def ffi_str(cdata: Any) -> str:
    from .libbpf import to_bytes

    return to_bytes(cdata).split(b"\0", 1)[0].decode(errors="replace")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def run(
    ctx: typer.Context,
    filter: str = typer.Option("default", "--filter", "-f", help="Filter profile."),
    json: bool = typer.Option(False, "--json", help="Events as JSON lines."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write events to a file."),
    stats_only: bool = typer.Option(False, "--stats-only", help="Count in the kernel only; "
                                    "stream no events."),
    no_children: bool = typer.Option(False, "--no-children", help="Trace CMD only, not its "
                                     "children."),
    color: str = typer.Option("auto", "--color", help="auto | always | never"),
    ring_size: int = typer.Option(DEFAULT_RING_SIZE, "--ring-size", help="Ring buffer bytes."),
    max_pids: Optional[int] = MaxPids,
) -> None:
    """Run CMD traced from its first syscall: swatch run [OPTIONS] -- CMD [ARGS...]"""
    from .launch import exit_code_for_shell, run_traced
    from .summary import render_run_summary

    argv = list(ctx.args)
    require_root()
    syscalls.profile(filter)
    out = open(output, "wb") if output else sys.stdout.buffer
    try:
        use_color = not json and output is None and _use_color(color, sys.stdout)
        result = run_traced(argv, profile=filter, json=json, out=out, stats_only=stats_only,
                            follow_children=not no_children, color=use_color,
                            notices=sys.stderr, ring_size=ring_size,
                            max_pids=max_pids or 0)
    finally:
        if output:
            out.close()
    sys.stderr.write(render_run_summary(argv, result))
    sys.stderr.flush()
    raise typer.Exit(exit_code_for_shell(result.exit_code))


@app.command()
@user_errors
def summary(
    interval: float = typer.Option(5.0, "--interval", "-i", help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print once and exit."),
    json: bool = typer.Option(False, "--json", help="One JSON object per refresh."),
    top: Optional[int] = typer.Option(None, "--top", "-n", help="Show only the first N rows."),
    by: str = typer.Option("syscall", "--by", help="syscall | pid | container"),
    sort: str = typer.Option("count", "--sort", help="count | errors | bytes_in | bytes_out | "
                             "avg | p99 | name"),
    pin_dir: Optional[Path] = PinDir,
) -> None:
    """Cumulative per-syscall (or per-process, per-container) counts, kept in the kernel."""
    from .summary import BY, SORT_KEYS, container_rows, pid_rows, render_table, sort_rows
    from .summary import syscall_rows

    if by not in BY:
        raise SwatchError(f"--by {by!r}: choose one of {', '.join(BY)}")
    if sort not in SORT_KEYS:
        raise SwatchError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    if interval <= 0:
        raise SwatchError("--interval must be positive")
    session = PinnedSession.open(_pin_dir(pin_dir))
    redraw = not once and not json and sys.stdout.isatty()
    try:
        while True:
            meta = session.meta()
            pid_stats = session.pid_stats()
            if by == "syscall":
                rows = syscall_rows(session.syscall_stats())
            elif by == "pid":
                rows = pid_rows(pid_stats)
            else:
                rows = container_rows(pid_stats)
            rows = sort_rows(rows, sort)
            target = ffi_str(meta.target_label)
            if meta.mode == MODE_IDS["pid"] and len(pid_stats) > 1:
                target += f" +{len(pid_stats) - 1} children"
            counters = session.counters()
            if json:
                typer.echo(jsonlib.dumps({
                    "target": ffi_str(meta.target_label), "by": by,
                    "processes": len(pid_stats),
                    "rows": [r.as_json() for r in (rows[:top] if top else rows)],
                    "total": {k: sum(getattr(r, k) for r in rows)
                              for k in ("count", "errors", "bytes_in", "bytes_out", "total_ns")},
                    "events_emitted": counters.total_emitted,
                    "events_dropped": counters.total_dropped,
                    "pid_stats_full": counters.pid_stats_full,
                    "pid_filter_full": counters.pid_filter_full,
                    "untracked": counters.untracked,
                }))
            else:
                every = "" if once else f" (every {interval:g}s)"
                text = render_table(rows, by, f"swatch — cumulative stats{every} — {target}", top)
                if counters.total_dropped:
                    text += (f"events: {counters.total_emitted:,} emitted, "
                             f"{counters.total_dropped:,} dropped (ring buffer full)\n")
                for line in membership_warnings(counters, int(meta.max_pids)):
                    text += f"WARNING: {line}\n"
                if by == "pid" and counters.pid_stats_full:
                    text += ("(the per-process rows leave those processes out; the per-syscall "
                             "totals count them)\n")
                if redraw:
                    sys.stdout.write("\033[H\033[2J")
                sys.stdout.write(text)
                sys.stdout.flush()
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


@app.command("policy-load")
@user_errors
def policy_load(
    policy: str = typer.Option(..., "--policy", "-P", help="Policy file, or a built-in name "
                               "(no-network, no-exec, read-only-fs, protect-system)."),
    pid: Optional[int] = typer.Option(None, "--pid", "-p", help="Enforce on this process and "
                                      "every process it forks from now on."),
    container: Optional[str] = typer.Option(None, "--container", "-c", help="Enforce on a "
                                            "container (name, ID or unique ID prefix)."),
    audit_only: bool = typer.Option(False, "--audit-only", help="Report what would be denied; "
                                    "deny nothing."),
    require_preventive: bool = typer.Option(False, "--require-preventive", help="Refuse to load "
                                            "if any operation could only be held reactively "
                                            "(SIGKILL after the call)."),
    max_pids: Optional[int] = MaxPids,
    pin_dir: Optional[Path] = PolicyPinDir,
) -> None:
    """Enforce a policy on a process tree or container; pinned, returns at once."""
    from .enforcer import load_pinned as load_policy_pinned
    from .policy import load_policy

    require_root()
    pol = load_policy(policy)
    if pid is None and container is None:
        raise SwatchError("policy-load needs a target: --pid PID or --container REF")
    target = _target(pid, None, None, False, container, max_pids)
    start = time.monotonic()
    path, plans = load_policy_pinned(pol, target, _policy_pin_dir(pin_dir), audit_only=audit_only,
                                     require_preventive=require_preventive)
    mode = " in audit-only mode (nothing is denied)" if audit_only else ""
    typer.echo(f"swatch: policy {pol.name} on {target.label}{mode}, pinned in {path} "
               f"[{(time.monotonic() - start) * 1000:.0f} ms]")
    for p in plans:
        typer.echo(f"  {p.op}: {p.describe(pol)}")
    typer.echo("`swatch watch` shows denials, `swatch policy-summary` counts them, "
               "`swatch policy-unload` stops.")


@app.command("policy-unload")
@user_errors
def policy_unload(pin_dir: Optional[Path] = PolicyPinDir) -> None:
    """Detach and remove the loaded policy. Safe to run twice."""
    from .enforcer import unload as unload_policy

    path = _policy_pin_dir(pin_dir)
    _report_unload(unload_policy(path), path, "policy unloaded", "no policy loaded")


@app.command("policy-summary")
@user_errors
def policy_summary(
    json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    pin_dir: Optional[Path] = PolicyPinDir,
) -> None:
    """Denials so far, per operation and per path rule (counted in the kernel)."""
    from .enforcer import PinnedPolicy, render_summary, summary as policy_counts

    session = PinnedPolicy.open(_policy_pin_dir(pin_dir))
    try:
        info = policy_counts(session)
    finally:
        session.close()
    if json:
        typer.echo(jsonlib.dumps(info))
    else:
        typer.echo(render_summary(info), nl=False)


@app.command()
@user_errors
def containers(json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The running containers swatch can see: runtime, ID, name, cgroup."""
    from .containers import DOCKER_SDK_MISSING, docker_sdk_missing, list_containers

    found = list_containers()
    if docker_sdk_missing():
        typer.echo(f"swatch: note: {DOCKER_SDK_MISSING}; Docker's names are not shown", err=True)
    if json:
        typer.echo(jsonlib.dumps([{"runtime": c.runtime, "id": c.id, "name": c.name,
                                   "cgroup": c.cgroup_path, "cgroup_id": c.cgroup_id,
                                   "pids": list(c.pids)} for c in found]))
        return
    if not found:
        typer.echo("swatch: no running containers found")
        return
    typer.echo(f"{'RUNTIME':11} {'ID':12}  {'NAME':24} CGROUP")
    for c in found:
        typer.echo(f"{c.runtime:11} {c.short_id:12}  {c.name[:24]:24} {c.cgroup_path}")


@app.command()
def profiles() -> None:
    """List the filter profiles and the syscalls each lets through."""
    for name in syscalls.profile_names():
        names = sorted(syscalls.profile(name))
        shown = ", ".join(names) if len(names) <= 20 else f"{len(names)} syscalls"
        typer.echo(f"{name:8} {syscalls.profile_description(name)}\n         {shown}")


@app.command()
def version() -> None:
    """Print swatch's version."""
    typer.echo(f"swatch {__version__}")


def main() -> None:
    app()
