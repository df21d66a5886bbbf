"""The `swatch` command line: parse, call the core, print. No BPF logic here."""

from __future__ import annotations

import functools
import json as jsonlib
import math
import os
import pwd
import shutil
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on the system click
    from click.exceptions import ClickException  # type: ignore[no-redef]

from syscall_watcher import __version__

from syscall_watcher.kernel import syscalls
from syscall_watcher.errors import SwatchError
from syscall_watcher.text import one_line
from syscall_watcher.trace.stream import LIVE_MS, Output, StopSignals, Streamer, tell
from syscall_watcher.kernel.system import require_root
from syscall_watcher.targets.target import Target
from syscall_watcher.trace.tracer import (
    DEFAULT_RING_SIZE,
    MODE_NAMES,
    MODE_IDS,
    PinnedSession,
    load_pinned,
    membership_warnings,
    pin_dir_default,
    pin_state,
    pin_status,
)

app = typer.Typer(
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
        _sweep_stale_runs()


def _sweep_stale_runs() -> None:
    """Every command first removes the cgroups of runs whose swatch was killed outright."""
    if os.geteuid() != 0:
        return
    from syscall_watcher.sandbox.cgroups import sweep_stale

    try:
        for line in sweep_stale():
            typer.echo(f"swatch: note: {line}", err=True)
    except OSError as err:
        typer.echo(f"swatch: note: cannot check for stale run cgroups: {err}", err=True)


# strace-style options shared by load / watch / run
def _syscalls_opt() -> Any:
    return typer.Option(None, "--syscalls", "-e", metavar="NAMES",
                        help="Syscalls to show, strace style: openat,connect (only those), "
                        "!read (all but), %file / %network / %process (classes); repeatable. "
                        "Added to --filter when both are given. Names are checked against "
                        "the kernel's table.")


def _failed_opt() -> Any:
    return typer.Option(False, "--failed", "-Z", help="Show only syscalls that failed "
                        "(strace -Z).")


def _ts_opts() -> tuple[Any, Any, Any, Any]:
    return (
        typer.Option(False, "-T", help="Show each syscall's duration, <seconds> at the end "
                     "of the line."),
        typer.Option(0, "-t", count=True, help="Timestamps: -t HH:MM:SS, -tt with "
                     "microseconds, -ttt seconds since the epoch (default HH:MM:SS.mmm)."),
        typer.Option(False, "-r", help="Timestamps relative to the previous line, in seconds."),
        typer.Option(0, "--string-limit", "-s", min=0, metavar="N",
                     help="Show at most N bytes of each string in human lines (paths, "
                     "arguments), then \"...\"; 0: whole strings. JSON keeps them whole."),
    )


def _ancestry_opt() -> Any:
    return typer.Option(False, "--ancestry", help="Show the parent chain of each exec'd "
                        "process on its EXEC line (JSON always has it).")


def _view(sel: Any, json: bool, failed: bool, durations: bool, t_count: int, relative: bool,
          strsize: int, ancestry: bool) -> Any:
    from syscall_watcher.trace.view import TraceView, ts_style

    return TraceView.for_selection(sel, json=json, failed_only=failed, show_duration=durations,
                                   ts_style=ts_style(t_count, relative), strsize=strsize,
                                   ancestry=ancestry)

F = TypeVar("F", bound=Callable[..., Any])

# parser=str keeps the raw text: a Path would turn "" into "." (the current directory).
PinDir = typer.Option(None, "--pin-dir", parser=str, envvar="SWATCH_PIN_DIR", show_envvar=True,
                      help="bpffs directory for pins [default /sys/fs/bpf/syscall_watcher]")


PolicyPinDir = typer.Option(None, "--pin-dir", parser=str, envvar="SWATCH_POLICY_PIN_DIR",
                            show_envvar=True, help="bpffs directory for the policy's pins "
                            "[default /sys/fs/bpf/syscall_watcher_policy]")


def _policy_pin_dir(value: Optional[str | Path]) -> Path:
    from syscall_watcher.policy.enforcer import pin_dir_default as policy_pin_dir_default

    return policy_pin_dir_default(value)


def error_line(message: str) -> None:
    """The one line every user mistake prints: ``swatch: error: ...`` (controls escaped, so a
    path with a newline or an escape sequence in it cannot make it two lines or recolour it)."""
    typer.secho(f"swatch: error: {one_line(message)}", fg="red", err=True)


def user_errors(fn: F) -> F:
    """A SwatchError becomes one red line on stderr and exit status 1 — never a traceback.

    Last resort: an OSError that escaped the core (a path the user gave that is not what it
    should be) is one line too, naming the file and the system's reason.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SwatchError as err:
            error_line(str(err))
            raise typer.Exit(1) from None
        except OSError as err:
            where = f"{os.fsdecode(err.filename)}: " if err.filename is not None else ""
            error_line(f"{where}{err.strerror or err}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class ColorMode(str, Enum):
    """--color: colour human lines when stdout is a terminal (auto), always or never."""

    auto = "auto"
    always = "always"
    never = "never"


def _positive_seconds(option: str, value: Optional[float]) -> None:
    """--duration and --interval: a finite number of seconds greater than zero."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SwatchError(f"{option} {value:g}: give a number of seconds greater than 0")


def _one_pid(pids: Optional[list[int]]) -> Optional[int]:
    """--pid names one process here; several would silently keep only the last."""
    if not pids:
        return None
    if len(pids) > 1:
        raise SwatchError(f"one --pid at a time (got {len(pids)}: "
                          f"{' '.join(map(str, pids))}); trace a tree with one --pid and its "
                          "children are followed")
    return pids[0]


def _pin_dir(value: Optional[str | Path]) -> Path:
    return pin_dir_default(value)


def _use_color(mode: ColorMode | str, stream: Any) -> bool:
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


MaxPids = typer.Option(None, "--max-pids", help="Room for this many processes in the "
                       "pid-keyed maps [default: the kernel's pid_max, at most 65536]; what "
                       "does not fit is counted and shown (and a policy fails closed).")


def _target(pid: Optional[int | list[int]], comm: Optional[str], uid: Optional[str],
            no_children: bool, container: Optional[str] = None,
            max_pids: Optional[int] = None) -> Target:
    pids = ([pid] if isinstance(pid, int) else list(dict.fromkeys(pid))) if pid else []
    chosen = [n for n, v in (("--pid", pids or None), ("--comm", comm), ("--uid", uid),
                             ("--container", container)) if v is not None]
    if len(chosen) > 1:
        raise SwatchError(f"choose one target, not {' and '.join(chosen)}")
    if max_pids is not None and not 1 <= max_pids <= 1 << 22:
        raise SwatchError(f"--max-pids {max_pids}: choose 1 to {1 << 22}")
    target = _target_of(pids, comm, uid, no_children, container)
    target.max_pids = max_pids or 0
    return target


def _target_of(pids: list[int], comm: Optional[str], uid: Optional[str], no_children: bool,
               container: Optional[str]) -> Target:
    from syscall_watcher.targets.process import resolve_pid

    if pids:
        resolved = []
        for p in pids:  # a thread id becomes its process; zombies, kernel threads refused
            r = resolve_pid(p)
            if r.notice:
                typer.echo(r.notice, err=True)
            resolved.append(r.pid)
        resolved = list(dict.fromkeys(resolved))
        label = ("pid " if len(resolved) == 1 else "pids ") + ",".join(map(str, resolved))
        return Target(mode="pid", pid=resolved[0], more_pids=tuple(resolved[1:]),
                      follow_children=not no_children, label=label[:63])
    if comm is not None:
        if not comm or len(comm.encode()) > 15:
            raise SwatchError(f"--comm {comm!r}: a command name is 1 to 15 bytes (the kernel's "
                              "TASK_COMM_LEN)")
        return Target(mode="comm", comm=comm, label=f"comm {comm}")
    if uid is not None:
        if uid.isdigit():
            n = int(uid)
            if n >= 0xFFFFFFFF:  # uid_t is 32 bits and (uid_t)-1 means "no user"
                raise SwatchError(f"--uid {uid}: a user id is 0 to {0xFFFFFFFF - 1}")
        else:
            try:
                n = pwd.getpwnam(uid).pw_uid
            except KeyError:
                raise SwatchError(f"no such user: {uid}") from None
        return Target(mode="uid", uid=n, label=f"uid {n}")
    if container is not None:
        from syscall_watcher.targets.containers import cgroup_v2_root, resolve_container

        c = resolve_container(container)
        level = len(Path(c.cgroup_path).relative_to(cgroup_v2_root()).parts)
        return Target(mode="cgroup", cgroup_id=c.cgroup_id, cgroup_level=level,
                      cgroup_path=c.cgroup_path, label=f"container {c.short_id} ({c.name})")
    return Target(mode="all", label="system-wide")


@app.command()
@user_errors
def load(
    pid: Optional[list[int]] = typer.Option(None, "--pid", "-p", metavar="PID",
                                            help="Trace this process "
                                            "and, by default, every process it forks from "
                                            "now on. Repeat to trace several."),
    comm: Optional[str] = typer.Option(None, "--comm", help="Trace every process with this "
                                       "command name."),
    uid: Optional[str] = typer.Option(None, "--uid", help="Trace every process of this user "
                                      "(name or number)."),
    container: Optional[str] = typer.Option(None, "--container", help="Trace a container "
                                            "(name, ID or unique ID prefix)."),
    filter: Optional[str] = typer.Option(None, "--filter", help="Filter profile: which "
                                         "syscalls become events (see `swatch profiles`) "
                                         "[default: default]"),
    syscalls_expr: Optional[list[str]] = _syscalls_opt(),
    failed: bool = _failed_opt(),
    follow_forks: bool = typer.Option(True, "--follow-forks", "-f", help="With --pid: follow "
                                      "children (the default; as strace -f)."),
    no_children: bool = typer.Option(False, "--no-children", help="With --pid: do not follow "
                                     "children."),
    ring_size: int = typer.Option(DEFAULT_RING_SIZE, "--ring-size", help="Ring buffer bytes "
                                  "(a power of two)."),
    replace: bool = typer.Option(False, "--replace", help="Replace a tracer already loaded."),
    max_pids: Optional[int] = MaxPids,
    pin_dir: Optional[Path] = PinDir,
) -> None:
    """Load the tracer, pin it under bpffs and return; tracing goes on without us."""
    from syscall_watcher.trace.view import select_syscalls

    require_root()
    sel = select_syscalls(filter, syscalls_expr)
    if no_children and not pid:
        raise SwatchError("--no-children applies to --pid only (the other targets have no tree "
                          "to follow)")
    target = _target(pid, comm, uid, no_children, container, max_pids)
    start = time.monotonic()
    path = load_pinned(target, sel.label, _pin_dir(pin_dir), ring_size, replace=replace,
                       enabled=sel.syscalls, failed_only=failed)
    typer.echo(f"swatch: tracing {target.label} (filter {sel.label}), pinned in {path} "
               f"[{(time.monotonic() - start) * 1000:.0f} ms]. `swatch watch` to see events, "
               "`swatch unload` to stop.")


WATCH_HELP = (
    "Stream the loaded tracer's events, and a loaded policy's denials, live and in time order, "
    "until Ctrl-C, SIGTERM or SIGHUP.\n\n"
    "Each of those signals stops the stream the same way: every event delivered is written, "
    "then swatch detaches. Exits 1 if the output fails (a full disk, a closed pipe)."
)


@app.command(help=WATCH_HELP)
@user_errors
def watch(
    json: bool = typer.Option(False, "--json", help="One JSON object per line (schema in the "
                              "README)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write events to this "
                                          "file instead of stdout."),
    color: ColorMode = typer.Option(ColorMode.auto, "--color", help="auto | always | never"),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many "
                                             "seconds."),
    syscalls_expr: Optional[list[str]] = typer.Option(
        None, "--syscalls", "-e", metavar="NAMES", help="Show only these syscalls (strace "
        "style: openat,connect / !read / %file), of those the loaded filter emits."),
    failed: bool = _failed_opt(),
    durations: bool = _ts_opts()[0],
    t_count: int = _ts_opts()[1],
    relative: bool = _ts_opts()[2],
    strsize: int = _ts_opts()[3],
    ancestry: bool = _ancestry_opt(),
    pin_dir: Optional[Path] = PinDir,
    policy_pin_dir: Optional[Path] = typer.Option(
        None, "--policy-pin-dir", parser=str, envvar="SWATCH_POLICY_PIN_DIR", show_envvar=True,
        help="Where a loaded policy's pins are [default /sys/fs/bpf/syscall_watcher_policy]"),
) -> None:
    """Stream the loaded tracer's events, and a loaded policy's denials (help: WATCH_HELP)."""
    from syscall_watcher.policy.enforcer import POLICY, PinnedPolicy

    _positive_seconds("--duration", duration)
    with StopSignals() as stop:  # first: a SIGTERM during set-up also ends cleanly
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
            view = (_watch_view(ffi_str(session.meta().profile), syscalls_expr, json, failed,
                                durations, t_count, relative, strsize, ancestry)
                    if session is not None else None)
            out = _open_output(output, 1, "stdout")
            use_color = not json and out.fd == 1 and _use_color(color, sys.stdout)
            _watch(session, policy, out, json, use_color, duration, tracer_dir, policy_dir, stop,
                   view)
        finally:
            if out is not None:
                out.close()
            if session is not None:
                session.close()
            if policy is not None:
                policy.close()
    if out.failed:
        raise typer.Exit(1)


def _watch(session: Optional[PinnedSession], policy: Any, out: Output, json: bool,
           use_color: bool, duration: Optional[float], tracer_dir: Path, policy_dir: Path,
           stop: StopSignals, view: Any = None) -> None:
    from syscall_watcher.policy.enforcer import DenialStreamer, policy_status

    denials = (DenialStreamer(policy, out, json_lines=json, color=use_color, notices=sys.stderr)
               if policy is not None else None)
    end = time.monotonic() + duration if duration else None

    def going() -> bool:
        return not stop.requested and not out.failed and (end is None or time.monotonic() < end)

    try:
        if session is None:
            assert denials is not None
            while going():
                denials.pump(LIVE_MS)
                if policy_status(policy_dir) != "loaded":
                    typer.echo("swatch: the policy was unloaded", err=True)
                    break
            denials.finish()
            return
        meta = session.meta()
        cgroup_path = ffi_str(meta.cgroup_path)
        if meta.mode == MODE_IDS["cgroup"]:
            label_container_cgroups(cgroup_path, ffi_str(meta.target_label))
        with Streamer(session, out, json=json, color=use_color, notices=sys.stderr,
                      view=view) as s:
            container_gone = False
            while going():
                s.pump(LIVE_MS, denials)
                if not pin_dir_alive(tracer_dir):
                    typer.echo("swatch: the tracer was unloaded", err=True)
                    break
                if cgroup_path and not container_gone and not os.path.isdir(cgroup_path):
                    container_gone = True
                    typer.echo(f"swatch: {ffi_str(meta.target_label)} has exited; its "
                               "counts are kept (`swatch status`)", err=True)
            s.finish(denials)
            tell(sys.stderr, f"swatch: events delivered={s.delivered} dropped={s.dropped_during} "
                             f"written={out.lines}\n")
    finally:
        if denials is not None:
            denials.close()


def _open_output(output: Optional[Path], default_fd: int, default_name: str) -> Output:
    """-o FILE, `-o -` for stdout, or the default stream."""
    if output is None:
        return Output(default_fd, default_name)
    if str(output) == "-":
        return Output(1, "stdout")
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise SwatchError(f"cannot open {output}: {err.strerror}") from None
    return Output(fd, str(output))


def _watch_view(loaded: str, exprs: Optional[list[str]], json: bool, failed: bool,
                durations: bool, t_count: int, relative: bool, strsize: int,
                ancestry: bool) -> Any:
    """`watch` filters in the formatter: -e NAME shows only those of the loaded tracer's
    events; -e !NAME hides some; start-up folding as for the profile loaded."""
    from syscall_watcher.trace.view import TraceView, select_syscalls

    profile = loaded if loaded in syscalls.profile_names() else None
    positives = any(not x.startswith("!") for e in exprs or [] for x in
                    e.removeprefix("trace=").split(",") if x.strip())
    if exprs or profile:
        sel = select_syscalls(None if positives else profile, exprs)
        return _view(sel, json, failed, durations, t_count, relative, strsize, ancestry)
    # loaded with -e: show what it emits, unfolded (its events were picked by name)
    from syscall_watcher.trace.view import ts_style

    return TraceView(failed_only=failed, show_duration=durations,
                     ts_style=ts_style(t_count, relative), strsize=strsize, ancestry=ancestry)


def label_container_cgroups(cgroup_path: str, label: str) -> None:
    """Events from the container's cgroup (and those below it) carry its short ID and name."""
    from syscall_watcher.kernel.libbpf import set_cgroup_label

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
    from syscall_watcher.trace.tracer import unload as unload_tracer

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
    from syscall_watcher.trace.summary import plural

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
        typer.echo(f"  traced     {plural(len(info['pids']), 'process', 'processes')}: "
                   + " ".join(map(str, info["pids"][:20])))
    typer.echo(f"  watching   {'pid ' + str(consumer) if streaming else 'no consumer attached'}")
    typer.echo(f"  syscalls   {info['syscalls_counted']:,} counted")
    typer.echo(f"  events     {counters.total_emitted:,} emitted, {counters.total_dropped:,} "
               "dropped (ring buffer full)")
    for line in membership_warnings(counters, int(meta.max_pids)):
        typer.secho(f"  WARNING    {line}", fg="red", err=False)




def ffi_str(cdata: Any) -> str:
    from syscall_watcher.kernel.libbpf import to_bytes

    return to_bytes(cdata).split(b"\0", 1)[0].decode(errors="replace")


RUN_HELP = (
    "Run CMD traced from its first syscall: swatch run [OPTIONS] -- CMD [ARGS...]\n\n"
    "As with strace, CMD's stdin, stdout and stderr stay CMD's own: the trace and the summary "
    "go to stderr (with --json, the summary is then a last JSON line of type \"summary\"); "
    "-o FILE sends the trace to FILE, `-o -` to stdout.\n\n"
    "If the trace's output fails (a closed pipe, a full disk), CMD runs on to its end; swatch "
    "says so once, stops writing and exits with CMD's exit code (128+N if signal N killed it)."
)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             help=RUN_HELP)
@user_errors
def run(
    ctx: typer.Context,
    filter: Optional[str] = typer.Option(None, "--filter", help="Filter profile (see `swatch "
                                         "profiles`) [default: default]"),
    syscalls_expr: Optional[list[str]] = _syscalls_opt(),
    failed: bool = _failed_opt(),
    durations: bool = _ts_opts()[0],
    t_count: int = _ts_opts()[1],
    relative: bool = _ts_opts()[2],
    strsize: int = _ts_opts()[3],
    ancestry: bool = _ancestry_opt(),
    json: bool = typer.Option(False, "--json", help="Events as JSON lines."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the trace to "
                                          "this file (`-o -`: stdout) instead of stderr."),
    stats_only: bool = typer.Option(False, "--stats-only", "--count", "-c", help="Count in the "
                                    "kernel only and print the summary table; stream no events "
                                    "(strace -c)."),
    follow_forks: bool = typer.Option(True, "--follow-forks", "-f", help="Trace CMD's children "
                                      "too (the default; as strace -f)."),
    no_children: bool = typer.Option(False, "--no-children", help="Trace CMD only, not its "
                                     "children."),
    color: ColorMode = typer.Option(ColorMode.auto, "--color", help="auto | always | never"),
    ring_size: int = typer.Option(DEFAULT_RING_SIZE, "--ring-size", help="Ring buffer bytes."),
    max_pids: Optional[int] = MaxPids,
    memory: Optional[str] = typer.Option(None, "--memory", metavar="SIZE", help="Memory "
                                         "limit for CMD and its children (512M, 2G): a cgroup "
                                         "of the run; reaching it is an OOM kill, reported."),
    cpu: Optional[str] = typer.Option(None, "--cpu", metavar="PCT", help="CPU limit, 100% "
                                      "being one whole CPU (50%, 150%)."),
    pids: Optional[int] = typer.Option(None, "--pids", metavar="N", help="At most N "
                                       "processes and threads at once (fork fails with "
                                       "EAGAIN beyond)."),
    oom_score_adj: Optional[int] = typer.Option(None, "--oom-score-adj", metavar="N",
                                                help="CMD's oom_score_adj, -1000 to 1000."),
    policy: Optional[str] = typer.Option(None, "--policy", "-P", help="Apply this policy "
                                         "(file or built-in name) to CMD before its exec, "
                                         "with Landlock and seccomp (no BPF hook needed)."),
    require_preventive: bool = typer.Option(False, "--require-preventive", help="With "
                                            "--policy: refuse to run if an operation cannot "
                                            "be held by Landlock or seccomp here."),
) -> None:
    """Run CMD traced from its first syscall (help: RUN_HELP)."""
    from syscall_watcher.trace.run import exit_code_for_shell, run_traced
    from syscall_watcher.trace.summary import render_run_summary, run_summary_json

    from syscall_watcher.trace.view import select_syscalls

    from syscall_watcher.sandbox.limits import parse_limits

    argv = list(ctx.args)
    limits = parse_limits(memory, cpu, pids, oom_score_adj)
    if require_preventive and policy is None:
        raise SwatchError("--require-preventive goes with --policy")
    require_root()
    sel = select_syscalls(filter, syscalls_expr)
    plan = _preventive_plan(policy, argv, require_preventive) if policy is not None else None
    view = _view(sel, json, failed, durations, t_count, relative, strsize, ancestry)
    out = _open_output(output, 2, "stderr")
    try:
        tty = {1: sys.stdout, 2: sys.stderr}.get(out.fd)
        use_color = not json and tty is not None and _use_color(color, tty)
        # JSON lines on stderr: drops are already `lost` lines there, and the summary is one
        # more JSON line, so `2>&1 >/dev/null | jq` reads nothing but JSON.
        json_on_stderr = json and out.fd == 2
        result = run_traced(argv, profile=sel.label, json=json, out=out, stats_only=stats_only,
                            follow_children=not no_children, color=use_color,
                            notices=None if json_on_stderr else sys.stderr,
                            ring_size=ring_size, enabled=sel.syscalls, failed_only=failed,
                            view=view, max_pids=max_pids or 0,
                            limits=limits if limits.wants_cgroup or oom_score_adj is not None
                            else None, preventive=plan)
    finally:
        out.close()
    tell(sys.stderr, run_summary_json(argv, result) if json_on_stderr
         else render_run_summary(argv, result, top=None if stats_only else 15))
    raise typer.Exit(exit_code_for_shell(result.exit_code))


def _preventive_plan(policy: str, argv: list[str], require_preventive: bool) -> Any:
    """Landlock ruleset and seccomp filter for `run --policy`; what holds each operation is
    printed (stderr) before CMD starts."""
    from syscall_watcher.policy.language import load_policy
    from syscall_watcher.sandbox.preventive import plan

    if not argv:
        raise SwatchError("no command given: swatch run [OPTIONS] -- CMD [ARGS...]")
    pol = load_policy(policy)
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    held = plan(pol, path or argv[0], audit_only=require_preventive)
    if require_preventive and held.unheld():
        raise SwatchError(f"--require-preventive: policy {pol.name}: "
                          + "; ".join(p.describe() for p in held.ops if not p.mechanisms))
    if require_preventive:
        held = plan(pol, path or argv[0])
    typer.echo(f"swatch: policy {pol.name} applied to {argv[0]} before exec:", err=True)
    for p in held.ops:
        typer.echo(f"  {p.describe()}", err=True)
    for note in held.notes:
        typer.echo(f"  note: {note}", err=True)
    return held


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
    from syscall_watcher.trace.summary import BY, SORT_KEYS, container_rows, pid_rows, render_table, rows_that_fit
    from syscall_watcher.trace.summary import sort_rows, syscall_rows

    if by not in BY:
        raise SwatchError(f"--by {by!r}: choose one of {', '.join(BY)}")
    if sort not in SORT_KEYS:
        raise SwatchError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    _positive_seconds("--interval", interval)
    if top is not None and top < 1:
        raise SwatchError(f"--top {top}: show at least 1 row")
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
                # redrawn in place: the top rows by the sort key that fit the terminal
                shown = (rows_that_fit(shutil.get_terminal_size().lines, top) if redraw
                         else top)
                text = render_table(rows, by, f"swatch — cumulative stats{every} — {target}",
                                    shown)
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
    pid: Optional[list[int]] = typer.Option(None, "--pid", "-p", help="Enforce on this process "
                                            "and every process it forks from now on."),
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
    from syscall_watcher.policy.enforcer import load_pinned as load_policy_pinned
    from syscall_watcher.policy.language import load_policy

    require_root()
    pol = load_policy(policy)
    if not pid and container is None:
        raise SwatchError("policy-load needs a target: --pid PID or --container REF")
    target = _target(_one_pid(pid), None, None, False, container, max_pids)
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
    from syscall_watcher.policy.enforcer import unload as unload_policy

    path = _policy_pin_dir(pin_dir)
    _report_unload(unload_policy(path), path, "policy unloaded", "no policy loaded")


@app.command("policy-summary")
@user_errors
def policy_summary(
    json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    pin_dir: Optional[Path] = PolicyPinDir,
) -> None:
    """Denials so far, per operation and per path rule (counted in the kernel)."""
    from syscall_watcher.policy.enforcer import PinnedPolicy, render_summary, summary as policy_counts

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
    from syscall_watcher.targets.containers import DOCKER_SDK_MISSING, docker_sdk_missing, list_containers

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
@user_errors
def cleanup() -> None:
    """Remove the run cgroups a killed swatch left, ending the processes still in them."""
    from syscall_watcher.sandbox.cgroups import sweep_stale

    require_root()
    lines = sweep_stale(end_processes_too=True)
    for line in lines:
        typer.echo(f"swatch: {line}")
    if not lines:
        typer.echo("swatch: no stale run cgroups")


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
    """The `swatch` entry point: a usage mistake is one line too (click's own messages)."""
    try:
        code = app(standalone_mode=False)
    except ClickException as err:
        if not err.format_message():  # no arguments at all: click has printed the help
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
