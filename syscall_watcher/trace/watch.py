"""`swatch watch`: stream a pinned tracer's events and a pinned policy's denials, live and in
time order, until a stop signal, the end of --duration, a failed output, or the component being
unloaded; say when a traced container has exited."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.libbpf import set_cgroup_kubernetes, set_cgroup_label, to_str
from syscall_watcher.kernel.system import require_root
from syscall_watcher.trace.stream import (LIVE_MS, Output, Source, StopSignals, Streamer,
                                          TraceSource, tell)
from syscall_watcher.trace.tracer import MODE_IDS, PinnedSession, pin_status
from syscall_watcher.trace.view import TraceView, ViewOptions, use_color

if TYPE_CHECKING:
    from syscall_watcher.tls.probes import TlsSettings


def open_output(output: str | Path | None, default_fd: int, default_name: str) -> Output:
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


def label_container_cgroups(cgroup_path: str, label: str) -> None:
    """Events from the container's cgroup (and those below it) carry its short ID and name, and
    its pod's namespace, name and container name when the runtime labelled it for Kubernetes."""
    from syscall_watcher.targets.containers import pod_of_cgroup_id

    short = label.removeprefix("container ")
    labelled: list[int] = []
    for d, _, _ in os.walk(cgroup_path):
        try:
            cgroup_id = os.stat(d).st_ino
        except OSError:
            continue
        set_cgroup_label(cgroup_id, short)
        labelled.append(cgroup_id)
    if not labelled:
        return
    pod = pod_of_cgroup_id(labelled[:1]).get(labelled[0])
    if pod is not None:
        for cgroup_id in labelled:
            set_cgroup_kubernetes(cgroup_id, pod.namespace, pod.pod, pod.container)


def tracer_alive(pin_dir: Path) -> bool:
    """The pinned tracer is still there (`swatch unload` removes links/ first)."""
    return (pin_dir / "links").is_dir()


def watch(tracer_dir: Path, policy_dir: Path, *, view: ViewOptions,
          exprs: list[str] | None = None, output: str | Path | None = None, color: str = "auto",
          duration: float | None = None, notices: TextIO = sys.stderr,
          tls: TlsSettings | None = None, agent: bool = False) -> bool:
    """Stream what is loaded at ``tracer_dir`` (events) and ``policy_dir`` (denials), whichever
    are there, to ``output`` (stdout by default). False if the output failed."""
    from syscall_watcher.policy.enforcer import POLICY, PinnedPolicy

    with StopSignals() as stop:  # first: a SIGTERM during set-up also ends cleanly
        require_root()
        policy_state = POLICY.status(policy_dir)
        policy_problem = POLICY.problem(policy_dir, policy_state)
        if policy_problem and pin_status(tracer_dir) == "absent":
            raise SwatchError(policy_problem)
        if tls is not None and pin_status(tracer_dir) != "loaded":
            raise SwatchError(f"--tls: no tracer loaded at {tracer_dir} (`swatch load` first)")
        if policy_problem:
            tell(notices, f"swatch: not showing denials: {policy_problem}\n")
        policy = PinnedPolicy.open(policy_dir) if policy_state.loaded else None
        session = None
        out = None
        try:
            if policy is None or pin_status(tracer_dir) != "absent":
                session = PinnedSession.open(tracer_dir)
                if not session.latency_measured:
                    raise SwatchError(f"the tracer at {tracer_dir} was loaded with --no-latency: "
                                      "it counts only (`swatch summary`) and has no events to "
                                      "watch; load it without --no-latency to stream")
            trace_view = (view.for_loaded(to_str(session.meta().profile), exprs)
                          if session is not None else None)
            out = open_output(output, 1, "stdout")
            colored = not view.json and out.fd == 1 and use_color(color, sys.stdout)
            _stream(session, policy, out, view.json, colored, duration, tracer_dir, policy_dir,
                    stop, trace_view, notices, tls, agent)
        finally:
            if out is not None:
                out.close()
            if session is not None:
                session.close()
            if policy is not None:
                policy.close()
    return not out.failed


def _stream(session: PinnedSession | None, policy: Any, out: Output, json: bool, color: bool,
            duration: float | None, tracer_dir: Path, policy_dir: Path, stop: StopSignals,
            view: TraceView | None, notices: TextIO, tls: TlsSettings | None = None,
            agent: bool = False) -> None:
    from syscall_watcher.policy.denials import DenialSource
    from syscall_watcher.policy.enforcer import policy_status

    end = time.monotonic() + duration if duration else None

    def going() -> bool:
        return not stop.requested and not out.failed and (end is None or time.monotonic() < end)

    from syscall_watcher.policy.phases import PhaseLines
    from syscall_watcher.sandbox.denials import Merged

    sources: list[Source] = [TraceSource(session)] if session is not None else []
    phases = None
    if policy is not None:
        sources.append(DenialSource(policy))
        phases = PhaseLines(policy, json_lines=json, color=color)  # `policy phase` switches
    if session is None:  # a policy alone: its denials
        with Streamer(sources, out, json=json, color=color, notices=notices) as s:
            while going():
                s.pump(LIVE_MS, extra=phases)
                if policy_status(policy_dir) != "loaded":
                    tell(notices, "swatch: the policy was unloaded\n")
                    break
            s.finish(extra=phases)
        return
    meta = session.meta()
    cgroup_path = to_str(meta.cgroup_path)
    label = to_str(meta.target_label)
    if meta.mode == MODE_IDS["cgroup"]:
        label_container_cgroups(cgroup_path, label)
    tls_probes = tls_lines = steps = None
    if tls is not None:
        from syscall_watcher.tls.stream import open_for_session

        if agent:
            from syscall_watcher.tls.steps import Steps

            steps = Steps(json_lines=json, ids=session)
        tls_probes, tls_lines = open_for_session(session, tls, json_lines=json, color=color,
                                                 notices=notices, view=view, steps=steps)
    try:
        _pump(sources, out, json, color, notices, view, going, tracer_dir, cgroup_path, label,
              tls_lines, Merged(phases, tls_lines), steps)
    finally:
        if steps is not None:
            steps.close()
        if tls_lines is not None:
            tls_lines.close()
        if tls_probes is not None:
            tls_probes.close()


def _pump(sources: list[Source], out: Output, json: bool, color: bool, notices: TextIO,
          view: TraceView | None, going: Any, tracer_dir: Path, cgroup_path: str, label: str,
          tls_lines: Any, extra: Any, steps: Any = None) -> None:
    with Streamer(sources, out, json=json, color=color, notices=notices, view=view) as s:
        if tls_lines is not None:
            tls_lines.announce()  # after the stream opened: a test's barrier
        container_gone = False
        while going():
            s.pump(LIVE_MS, extra=extra)
            if not tracer_alive(tracer_dir):
                tell(notices, "swatch: the tracer was unloaded\n")
                break
            if cgroup_path and not container_gone and not os.path.isdir(cgroup_path):
                container_gone = True
                tell(notices, f"swatch: {label} has exited; its counts are kept "
                              "(`swatch status`)\n")
        s.finish(extra=extra)
        if steps is not None:  # each step summed up: the stream's last records
            steps.finish()
            if json:
                for record in steps.records():
                    out.write(record)
        tell(notices, f"swatch: events delivered={s.delivered} dropped={s.dropped_during} "
                      f"written={out.lines}\n")
        if tls_lines is not None:
            for line in tls_lines.summary_lines():
                tell(notices, f"swatch: {line}\n")
        if steps is not None and not json:
            for line in steps.summary_lines(tls_lines.probes.covered):
                tell(notices, f"swatch: {line}\n")
