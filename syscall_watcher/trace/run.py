"""`swatch run -- CMD`: start CMD held before exec, trace it from its first syscall, clean up."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.system import require_root
from syscall_watcher.sandbox.limits import Limits
from syscall_watcher.targets.target import Target
from syscall_watcher.trace.stream import LIVE_MS, Output, Streamer, tell
from syscall_watcher.trace.tracer import DEFAULT_RING_SIZE, LoadedTracer, membership_warnings
from syscall_watcher.trace.view import TraceView, ViewOptions, select_syscalls, use_color

if TYPE_CHECKING:
    from syscall_watcher.sandbox.preventive import PreventivePlan
    from syscall_watcher.tls.probes import TlsSettings


@dataclass
class SeccompProfileRun:
    """`run --seccomp FILE`: the profile's libseccomp filter, built before the fork, loaded in
    CMD's process right before its exec."""

    label: str  # the profile's file name, as denials name it
    filter: object  # pyseccomp.SyscallFilter
    errno_for: Callable[[str], int]  # the errno a denied syscall gets

    def load(self) -> None:
        self.filter.load()  # type: ignore[attr-defined]


@dataclass
class RunResult:
    exit_code: int
    wall_s: float
    delivered: int
    dropped: int
    emitted: int
    written: int
    tracer_stats: dict  # type: ignore[type-arg]
    pid_stats: dict  # type: ignore[type-arg]
    pid_stats_full: int = 0
    warnings: list[str] = field(default_factory=list)
    sandbox: object = None  # a SandboxReport when the run had limits
    seccomp_denied: dict | None = None  # type: ignore[type-arg]  # syscall → denials seen
    landlock_denied: dict | None = None  # type: ignore[type-arg]  # operation → denials seen
    tls_lines: list[str] = field(default_factory=list)  # --tls: the end-of-run TLS lines
    step_lines: list[str] = field(default_factory=list)  # --agent: the steps, summed up
    latency: bool = True  # False: --no-latency, the latency was not measured


def _held_child(path: str, argv: list[str],
                before_exec: Callable[[], None] | None = None,
                after_release: Callable[[], None] | None = None,
                wait_fd: list[int] | None = None) -> tuple[int, int]:
    """Fork a child that waits on a pipe, then execs; returns (pid, release fd).
    ``before_exec`` (Landlock, seccomp) runs in the child before it waits: untraced.
    ``after_release`` (an OCI profile's filter) runs after the wait, just before exec: the
    filter must allow only what CMD does, and the wait's read is not CMD's. ``wait_fd``, if
    given, gets the fd the child reads (its number in the child too)."""
    r, w = os.pipe()
    if wait_fd is not None:
        wait_fd.append(r)
    pid = os.fork()
    if pid == 0:  # child: untraced until the parent releases it
        try:
            os.close(w)
            # CMD starts with default dispositions: Python ignores SIGPIPE and SIGXFSZ, and
            # an ignored signal stays ignored across exec (`CMD | head` must end CMD).
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE,
                      signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)
            if before_exec is not None:
                before_exec()
            if os.read(r, 1) != b"":
                os._exit(126)
            if after_release is not None:
                after_release()
            os.execv(path, argv)  # the pipe is O_CLOEXEC: exec is the first traced syscall
        except BaseException as exc:  # noqa: BLE001 — nothing may escape a forked child
            try:
                os.write(2, f"swatch: cannot run {argv[0]}: {exc}\n".encode())
            finally:
                os._exit(127)
    os.close(r)
    return pid, w


def run_traced(argv: list[str], profile: str = "default", json: bool = False,
               out: Output | BinaryIO | None = None, stats_only: bool = False,
               follow_children: bool = True, color: bool = False,
               notices: TextIO | None = None, ring_size: int = DEFAULT_RING_SIZE,
               enabled: frozenset[str] | None = None, failed_only: bool = False,
               view: TraceView | None = None, max_pids: int = 0,
               stats_slots: int | None = None, limits: Limits | None = None,
               preventive: PreventivePlan | None = None,
               seccomp_profile: SeccompProfileRun | None = None,
               tls: TlsSettings | None = None, agent: bool = False,
               latency: bool = True) -> RunResult:
    if not argv:
        raise SwatchError("no command given: swatch run [OPTIONS] -- CMD [ARGS...]")
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if not path or not os.access(path, os.X_OK):
        raise SwatchError(f"command not found or not executable: {argv[0]}")
    if not isinstance(out, Output):  # the trace goes to stderr unless told otherwise
        out = Output(out) if out is not None else Output(sys.stderr.fileno(), "stderr")
    wait_fd: list[int] = []
    pid, release = _held_child(path, argv,
                               preventive.apply_in_child if preventive is not None else None,
                               seccomp_profile.load if seccomp_profile is not None else None,
                               wait_fd)
    status: int | None = None
    tracer = None
    box = None
    seccomp_denials = None
    landlock_denials = None
    tls_probes = tls_lines = steps = None
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if limits is not None:  # CMD is held before exec: limit it before its first instruction
            from syscall_watcher.sandbox.runtime import Sandbox

            box = Sandbox.apply(pid, limits, json_lines=json, color=color)
            if json:
                out.write(box.start_line(json_line=True))
            tell(notices, box.start_line(json_line=False).decode())
        tracer = LoadedTracer.load(
            Target(mode="pid", pid=pid, follow_children=follow_children,
                   label=os.path.basename(argv[0]), max_pids=max_pids,
                   stats_slots=stats_slots),
            profile, ring_size=ring_size, enabled=enabled, failed_only=failed_only,
            latency=latency,
        )
        if not latency:  # the held child's read began untraced: its exit is not CMD's call
            tracer.skip_in_flight_read(pid, wait_fd[0])
        extra = box
        if preventive is not None and preventive.seccomp_filter is not None:
            from syscall_watcher.sandbox.denials import Merged, SeccompDenials

            loaded = tracer
            seccomp_denials = SeccompDenials(
                preventive.policy.name,
                lambda: {pid, *loaded.pids(), *loaded.pid_stats()}, json_lines=json, color=color)
            extra = Merged(box, seccomp_denials)
        elif seccomp_profile is not None:
            from syscall_watcher.sandbox.denials import Merged, SeccompDenials

            loaded = tracer
            seccomp_denials = SeccompDenials(
                seccomp_profile.label, lambda: {pid, *loaded.pids(), *loaded.pid_stats()},
                json_lines=json, color=color, source="profile",
                errno_of=seccomp_profile.errno_for)
            extra = Merged(box, seccomp_denials)
        if preventive is not None and preventive.ruleset is not None:
            from syscall_watcher.sandbox import landlock_denials as lld
            from syscall_watcher.sandbox.denials import Merged

            why = lld.unavailable(preventive.ruleset.abi)
            if why:
                tell(notices, why)
            else:
                traced = tracer
                landlock_denials = lld.LandlockDenials(
                    preventive.policy.name,
                    lambda: {pid, *traced.pids(), *traced.pid_stats()}, json_lines=json,
                    color=color)
                extra = Merged(extra, landlock_denials)
        if tls is not None and not stats_only:
            from syscall_watcher.sandbox.denials import Merged
            from syscall_watcher.tls.probes import TlsProbes
            from syscall_watcher.tls.stream import TlsLines
            from syscall_watcher.trace.stream import clock_offset_ns

            if agent:
                from syscall_watcher.tls.steps import Steps

                steps = Steps(json_lines=json, ids=tracer)

            traced_now = tracer
            tls_probes = TlsProbes.load(
                tracer, Target(mode="pid", pid=pid, follow_children=follow_children),
                capture_bytes=tls.capture_bytes, ring_size=max(ring_size // 4, 1 << 16),
                extra_libraries=tls.libraries)
            tls_lines = TlsLines(
                tls_probes, lambda: {pid, *traced_now.pids()}, json_lines=json, color=color,
                notices=notices,
                preview=view.strsize if view is not None and view.strsize
                else 96, clock_offset_ns=clock_offset_ns(), steps=steps)
            extra = Merged(extra, tls_lines)
        start = time.monotonic()
        if stats_only:
            os.close(release)
            release = -1
            _, status = os.waitpid(pid, 0)
            delivered = dropped = written = 0
            if seccomp_denials is not None:
                seccomp_denials.take_all()  # counted for the summary
            if landlock_denials is not None:
                landlock_denials.take_all()
        else:
            with Streamer(tracer, out, json=json, color=color, notices=notices,
                          view=view) as streamer:
                os.close(release)
                release = -1
                while status is None:
                    streamer.pump(LIVE_MS, extra=extra)
                    wpid, wstatus = os.waitpid(pid, os.WNOHANG)
                    if wpid:
                        status = wstatus
                streamer.finish(extra=extra)
                if steps is not None:  # each step summed up: the trace's last records
                    steps.finish()
                    if json:
                        for record in steps.records():
                            out.write(record)
                delivered = streamer.delivered
                written = streamer.written
                dropped = streamer.dropped_during
        wall = time.monotonic() - start
        counters = tracer.counters()
        report = box.close() if box is not None else None
        return RunResult(
            exit_code=os.waitstatus_to_exitcode(status) if status is not None else 1,
            wall_s=wall,
            delivered=delivered,
            dropped=dropped if not stats_only else 0,
            emitted=counters.total_emitted,
            written=written,
            tracer_stats=tracer.call_stats(),
            pid_stats=tracer.pid_stats(),
            pid_stats_full=counters.pid_stats_full,
            warnings=membership_warnings(counters, tracer.max_pids, tracer.pid_slots),
            sandbox=report,
            seccomp_denied=dict(seccomp_denials.by_syscall) if seccomp_denials else None,
            landlock_denied=dict(landlock_denials.by_op) if landlock_denials else None,
            tls_lines=tls_lines.summary_lines() if tls_lines is not None else [],
            step_lines=steps.summary_lines(tls_probes.covered)
            if steps is not None and tls_probes is not None else [],
            latency=latency,
        )
    finally:
        if release >= 0:
            os.close(release)
        if status is None:
            # We failed before or while the child ran: never leave it behind.
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        if seccomp_denials is not None:
            seccomp_denials.close()
        if landlock_denials is not None:
            landlock_denials.close()
        if steps is not None:
            steps.close()
        if tls_lines is not None:
            tls_lines.close()
        if tls_probes is not None:
            tls_probes.close()
        if preventive is not None:
            preventive.close()
        if box is not None:
            box.close()  # ends what CMD left in its cgroup, removes it (also on Ctrl-C)
        if tracer is not None:
            tracer.close()
        for s, h in old.items():
            signal.signal(s, h)


def exit_code_for_shell(code: int) -> int:
    """waitstatus_to_exitcode gives -SIG for a signal death; a shell says 128+SIG."""
    return 128 - code if code < 0 else code


def run_command(argv: list[str], *, profile: str | None, exprs: list[str] | None,
                view: ViewOptions,
                output: str | Path | None = None, color: str = "auto",
                stats_only: bool = False, follow_children: bool = True,
                ring_size: int = DEFAULT_RING_SIZE, max_pids: int = 0,
                stats_slots: int | None = None,
                limits: tuple[str | None, str | None, int | None, int | None] = (
                    None, None, None, None),
                policy: str | None = None, require_preventive: bool = False,
                seccomp: str | None = None, phase: str | None = None,
                tls: TlsSettings | None = None, agent: bool = False,
                latency: bool = True) -> int:
    """`swatch run`: CMD traced, the trace to ``output`` (stderr by default, `-` stdout), the
    summary to stderr — one last JSON line of type "summary" when JSON lines share stderr.
    ``profile`` and ``exprs`` are --filter and -e. Returns the exit status for the shell
    (CMD's; 128+N if signal N killed it)."""
    from syscall_watcher.sandbox.limits import parse_limits
    from syscall_watcher.trace.watch import open_output

    run_limits = parse_limits(*limits)
    if not latency and not stats_only:
        raise SwatchError("--no-latency counts only (no sys_enter program): it goes with "
                          "--count/-c, not with a stream of events")
    if agent and stats_only:
        raise SwatchError("--agent shows steps: it does not go with --count/-c")
    if tls is not None and stats_only:
        raise SwatchError("--tls shows TLS lines: it does not go with --count/-c")
    if require_preventive and policy is None:
        raise SwatchError("--require-preventive goes with --policy")
    if phase is not None and policy is None:
        raise SwatchError("--phase goes with --policy")
    require_root()
    sel = select_syscalls(profile, exprs)
    if seccomp is not None and policy is not None:
        raise SwatchError("--seccomp and --policy: give one (each installs its own filter)")
    profile_run = None
    if seccomp is not None:
        from syscall_watcher.sandbox import oci

        profile = oci.read_profile(seccomp)
        profile_run = SeccompProfileRun(profile.label, oci.build_filter(profile),
                                        profile.errno_for)
        tell(sys.stderr, f"swatch: seccomp profile {seccomp} applied to {argv[0] if argv else ''}"
             f" before exec: default {profile.default_action}, {len(profile.rules)} rules"
             + (f" ({profile.skipped} left out by includes/excludes)" if profile.skipped
                else "") + "\n")
    plan = None
    if policy is not None:  # the policy compiler and Landlock: only for --policy
        from syscall_watcher.sandbox.preventive import plan_for_run

        plan = plan_for_run(policy, argv, require_preventive, sys.stderr, phase=phase)
    trace_view = view.for_selection(sel)
    out = open_output(output, 2, "stderr")
    try:
        tty = {1: sys.stdout, 2: sys.stderr}.get(out.fd)
        colored = not view.json and tty is not None and use_color(color, tty)
        # JSON lines on stderr: drops are already `lost` lines there, and the summary is one
        # more JSON line, so `2>&1 >/dev/null | jq` reads nothing but JSON.
        json_on_stderr = view.json and out.fd == 2
        result = run_traced(argv, profile=sel.label, json=view.json, out=out,
                            stats_only=stats_only, follow_children=follow_children,
                            color=colored, notices=None if json_on_stderr else sys.stderr,
                            ring_size=ring_size, enabled=sel.syscalls,
                            failed_only=view.failed_only, view=trace_view, max_pids=max_pids,
                            stats_slots=stats_slots,
                            limits=run_limits if run_limits.wants_cgroup or
                            run_limits.oom_score_adj is not None else None, preventive=plan,
                            seccomp_profile=profile_run,
                            tls=tls, agent=agent, latency=latency)
    finally:
        out.close()
    from syscall_watcher.trace.summary import render_run_summary, run_summary_json

    tell(sys.stderr, run_summary_json(argv, result) if json_on_stderr
         else render_run_summary(argv, result, top=None if stats_only else 15))
    if not json_on_stderr:
        for line in result.tls_lines:
            tell(sys.stderr, f"swatch: {line}\n")
        for line in result.step_lines:
            tell(sys.stderr, f"swatch: {line}\n")
    return exit_code_for_shell(result.exit_code)
