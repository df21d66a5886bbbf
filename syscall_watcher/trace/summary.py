"""Tables of the in-kernel counters: `swatch summary` and the end-of-run summary."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel import syscalls
from syscall_watcher.kernel.libbpf import to_str
from syscall_watcher.sandbox.runtime import limits_summary
from syscall_watcher.text import printable
from syscall_watcher.tls.redact import redact_argv

SORT_KEYS = ("count", "errors", "bytes_in", "bytes_out", "avg", "p99", "name")
BY = ("syscall", "pid", "container")


@dataclass
class Row:
    """One line of a summary table (a syscall, a process or a container)."""

    name: str
    count: int
    errors: int
    bytes_in: int
    bytes_out: int
    total_ns: int | None  # None: latency not measured (a --no-latency tracer)
    p50_ns: int | None = None
    p99_ns: int | None = None
    pid: int | None = None
    percentiles: bool = False  # a syscall row: p50_ns/p99_ns are its (null when not measured)

    @property
    def avg_ns(self) -> int | None:
        if self.total_ns is None:
            return None
        return self.total_ns // self.count if self.count else 0

    def as_json(self) -> dict:  # type: ignore[type-arg]
        """The row's fields; the latency ones null when not measured, never 0."""
        d = asdict(self)
        del d["percentiles"]
        d["avg_ns"] = self.avg_ns
        keep = {"total_ns", "avg_ns"} | ({"p50_ns", "p99_ns"} if self.percentiles else set())
        return {k: v for k, v in d.items() if v is not None or k in keep}


def percentile_ns(hist: list[int], q: float) -> int:
    """Upper bound of the log2 bucket holding the q-th quantile (bucket b: [2^b, 2^(b+1)) ns)."""
    total = sum(hist)
    if not total:
        return 0
    need = q * total
    seen = 0
    for b, n in enumerate(hist):
        seen += n
        if seen >= need:
            return 1 << (b + 1)
    return 1 << len(hist)


def syscall_rows(stats: dict) -> list[Row]:  # type: ignore[type-arg]
    names = syscalls.names()
    rows = []
    for nr, s in stats.items():  # a syscall's number, or an io_uring op's row name
        name = nr if isinstance(nr, str) else names.get(nr, f"nr{nr}")
        hist = s["hist"]  # None: latency not measured
        rows.append(Row(name=name, count=s["count"], errors=s["errors"],
                        bytes_in=s["bytes_in"], bytes_out=s["bytes_out"],
                        total_ns=s["total_ns"],
                        p50_ns=percentile_ns(hist, 0.50) if hist is not None else None,
                        p99_ns=percentile_ns(hist, 0.99) if hist is not None else None,
                        percentiles=True))
    return rows


def sum_ns(values) -> int | None:  # type: ignore[no-untyped-def]
    """A sum of total_ns values; None (not measured) if any is."""
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def pid_rows(pid_stats: dict) -> list[Row]:  # type: ignore[type-arg]
    return [Row(name=str(s["comm"]), pid=pid, count=int(s["count"]), errors=int(s["errors"]),
                bytes_in=int(s["bytes_in"]), bytes_out=int(s["bytes_out"]),
                total_ns=None if s["total_ns"] is None else int(s["total_ns"]))
            for pid, s in pid_stats.items()]


def container_rows(pid_stats: dict) -> list[Row]:  # type: ignore[type-arg]
    """Processes grouped by the container whose cgroup they were in ("host" for the rest)."""
    from syscall_watcher.targets.containers import container_of_cgroup_id

    labels = container_of_cgroup_id({int(s["cgroup_id"]) for s in pid_stats.values()})
    groups: dict[str, Row] = {}
    for s in pid_stats.values():
        short_name = labels.get(int(s["cgroup_id"]))
        key = f"{short_name[0]} ({short_name[1]})" if short_name else "host"
        row = groups.setdefault(key, Row(name=key, count=0, errors=0, bytes_in=0, bytes_out=0,
                                         total_ns=0))
        row.count += int(s["count"])
        row.errors += int(s["errors"])
        row.bytes_in += int(s["bytes_in"])
        row.bytes_out += int(s["bytes_out"])
        row.total_ns = sum_ns([row.total_ns, s["total_ns"]])
    return list(groups.values())


def sort_rows(rows: list[Row], key: str) -> list[Row]:
    if key == "name":
        return sorted(rows, key=lambda r: r.name)
    if key == "avg":
        return sorted(rows, key=lambda r: -(r.avg_ns or 0))
    if key == "p99":
        return sorted(rows, key=lambda r: -(r.p99_ns or 0))
    return sorted(rows, key=lambda r: (-getattr(r, key), r.name))


def human_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def human_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def render_table(rows: list[Row], by: str, title: str, top: int | None) -> str:
    total = Row(name="TOTAL", count=sum(r.count for r in rows),
                errors=sum(r.errors for r in rows), bytes_in=sum(r.bytes_in for r in rows),
                bytes_out=sum(r.bytes_out for r in rows),
                total_ns=sum_ns(r.total_ns for r in rows))
    shown = rows[:top] if top else rows
    first = {"syscall": "SYSCALL", "pid": "PID     COMM", "container": "CONTAINER"}[by]
    # A width that does not depend on which rows are shown, so a refresh never shifts columns.
    if by == "syscall":
        width = max([len(n) for n in syscalls.names().values()] + [len(r.name) for r in rows])
    elif by == "pid":
        width = 7 + 1 + 15  # pid, comm (TASK_COMM_LEN - 1)
    else:
        width = max([len(first), 24] + [len(r.name) for r in rows])
    lines = [f"=== {title} ===",
             f"{first:<{width}} {'COUNT':>9} {'ERRORS':>8} {'BYTES IN':>9} {'BYTES OUT':>9} "
             f"{'AVG':>8} {'P50':>8} {'P99':>8}"]
    for r in [*shown, total]:
        if r is total:
            lines.append("-" * len(lines[1]))
        lines.append(
            f"{_label(r, by):<{width}} {r.count:>9,} {r.errors:>8,} "
            f"{human_bytes(r.bytes_in):>9} {human_bytes(r.bytes_out):>9} "
            f"{human_ns(r.avg_ns if r.count else None):>8} "
            f"{human_ns(r.p50_ns) if r is not total else '':>8} "
            f"{human_ns(r.p99_ns) if r is not total else '':>8}".rstrip())
    if top and len(rows) > top:
        lines.insert(-2, f"... {len(rows) - top} more (--top)")
    return "\n".join(lines) + "\n"


def _label(r: Row, by: str) -> str:
    """The first column: a process's pid and name (escaped: a process names itself), a
    syscall, a container, or TOTAL (which has no pid)."""
    name = printable(r.name)
    return f"{r.pid:<7} {name}" if by == "pid" and r.pid is not None else name


TABLE_CHROME_LINES = 6  # title, header, "... more", rule, TOTAL, a drops line


def rows_that_fit(terminal_lines: int, top: int | None) -> int:
    """How many rows a redrawn table can show in a terminal this tall (at least 1)."""
    fit = max(1, terminal_lines - TABLE_CHROME_LINES - 1)
    return min(top, fit) if top else fit


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 process', '2 processes', '1,234 syscalls'."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def how_it_ended(exit_code: int) -> str:
    """os.waitstatus_to_exitcode's value in words: 'exited with code 3', 'killed by SIGKILL'."""
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def render_run_summary(argv: list[str], result,  # type: ignore[no-untyped-def]
                       top: int | None = 15) -> str:
    """What `swatch run` prints to stderr when CMD has exited (every row with top=None)."""
    rows = sort_rows(syscall_rows(result.tracer_stats), "count")
    errors = sum(r.errors for r in rows)
    box = getattr(result, "sandbox", None)
    ended = (box.ended_by(result.exit_code) if box else None) or how_it_ended(result.exit_code)
    title = (f"swatch — {os.path.basename(argv[0])} {ended} after "
             f"{result.wall_s:.2f}s — {plural(len(result.pid_stats), 'process', 'processes')}"
             + (f" (+{result.pid_stats_full} not counted per process)"
                if getattr(result, "pid_stats_full", 0) else ""))
    return (render_table(rows, "syscall", title, top=top)
            + f"swatch: {plural(sum(r.count for r in rows), 'syscall')}, "
              f"{plural(errors, 'error')}\n"
            + f"swatch: events delivered={result.delivered} dropped={result.dropped} "
              f"emitted={result.emitted} written={result.written}\n"
            + ("" if getattr(result, "latency", True) else
               "swatch: latency not measured (--no-latency): AVG, P50, P99 are '-'\n")
            + "".join(f"swatch: WARNING: {w}\n" for w in getattr(result, "warnings", []))
            + (limits_summary(box) if box else "")
            + _seccomp_line(getattr(result, "seccomp_denied", None))
            + _denied_line("landlock", getattr(result, "landlock_denied", None)))


def _denied_line(tier: str, denied: dict | None) -> str:  # type: ignore[type-arg]
    if denied is None:
        return ""
    return (f"swatch: DENIED by {tier}: "
            + (", ".join(f"{name} ×{n}" for name, n in sorted(denied.items())) or "none") + "\n")


def _seccomp_line(denied: dict | None) -> str:  # type: ignore[type-arg]
    if denied is None:
        return ""
    if not denied:
        return "swatch: DENIED by seccomp: none\n"
    return ("swatch: DENIED by seccomp: "
            + ", ".join(f"{name} ×{n}" for name, n in sorted(denied.items())) + "\n")


def run_summary_json(argv: list[str], result) -> str:  # type: ignore[no-untyped-def]
    """The same as one JSON line, for when the trace (JSON lines) shares stderr with it."""
    rows = syscall_rows(result.tracer_stats)
    return json.dumps({
        "type": "summary", "time_ns": time.time_ns(), "command": redact_argv(argv),
        "exit_code": result.exit_code,
        "wall_s": round(result.wall_s, 3), "processes": len(result.pid_stats),
        "syscalls": sum(r.count for r in rows), "errors": sum(r.errors for r in rows),
        "latency_measured": getattr(result, "latency", True),
        "events": {"delivered": result.delivered, "dropped": result.dropped,
                   "emitted": result.emitted, "written": result.written},
        "warnings": list(getattr(result, "warnings", [])),
        **({"sandbox": box.as_json(), "ended_by": box.ended_by(result.exit_code)}
           if (box := getattr(result, "sandbox", None)) else {}),
        **({"denied": {k: v for k in ("seccomp", "landlock")
                       if (v := getattr(result, f"{k}_denied", None)) is not None}}
           if any(getattr(result, f"{k}_denied", None) is not None
                  for k in ("seccomp", "landlock")) else {}),
    }) + "\n"


def pinned_summary_json(session, by: str, sort: str,  # type: ignore[no-untyped-def]
                        top: int | None) -> dict:  # type: ignore[type-arg]
    """`swatch summary --json`: one refresh of a pinned tracer's counters as one object (the
    rows cut to ``top``, the totals over every row)."""
    pid_stats = session.pid_stats()
    rows = sort_rows(_rows(session, by, pid_stats), sort)
    counters = session.counters()
    return {
        "target": to_str(session.meta().target_label), "by": by,
        "processes": len(pid_stats),
        "rows": [r.as_json() for r in (rows[:top] if top else rows)],
        "latency_measured": session.latency_measured,
        "total": {**{k: sum(getattr(r, k) for r in rows)
                     for k in ("count", "errors", "bytes_in", "bytes_out")},
                  "total_ns": sum_ns(r.total_ns for r in rows)
                  if session.latency_measured else None},
        "events_emitted": counters.total_emitted,
        "events_dropped": counters.total_dropped,
        "pid_stats_full": counters.pid_stats_full,
        "pid_filter_full": counters.pid_filter_full,
        "untracked": counters.untracked,
    }


def pinned_summary_text(session, by: str, sort: str,  # type: ignore[no-untyped-def]
                        top: int | None, every: str) -> str:
    """One refresh of `swatch summary` as the human table (``every``: the title's refresh
    note), with the drop and membership warnings under it."""
    from syscall_watcher.trace.tracer import MODE_IDS, membership_warnings

    meta = session.meta()
    pid_stats = session.pid_stats()
    rows = sort_rows(_rows(session, by, pid_stats), sort)
    target = to_str(meta.target_label)
    if meta.mode == MODE_IDS["pid"] and len(pid_stats) > 1:
        target += f" +{len(pid_stats) - 1} children"
    counters = session.counters()
    text = render_table(rows, by, f"swatch — cumulative stats{every} — {target}", top)
    if counters.total_dropped:
        text += (f"events: {counters.total_emitted:,} emitted, "
                 f"{counters.total_dropped:,} dropped (ring buffer full)\n")
    for line in membership_warnings(counters, int(meta.max_pids), int(meta.pid_slots)):
        text += f"WARNING: {line}\n"
    if by == "pid" and counters.pid_stats_full:
        text += ("(the per-process rows leave those processes out; the per-syscall "
                 "totals count them)\n")
    return text


def _rows(session, by: str, pid_stats: dict) -> list[Row]:  # type: ignore[no-untyped-def,type-arg]
    if by == "syscall":
        return syscall_rows(session.call_stats())
    return pid_rows(pid_stats) if by == "pid" else container_rows(pid_stats)


def show_pinned_summary(pin_dir: Path, *, by: str = "syscall", sort: str = "count",
                        top: int | None = None, interval: float = 5.0, once: bool = False,
                        json_lines: bool = False, out: TextIO = sys.stdout) -> None:
    """`swatch summary`: print the pinned tracer's counters every ``interval`` seconds (once
    with ``once``) until Ctrl-C; a terminal is redrawn in place with the rows that fit."""
    from syscall_watcher.trace.tracer import PinnedSession

    if by not in BY:
        raise SwatchError(f"--by {by!r}: choose one of {', '.join(BY)}")
    if sort not in SORT_KEYS:
        raise SwatchError(f"--sort {sort!r}: choose one of {', '.join(SORT_KEYS)}")
    if not (math.isfinite(interval) and interval > 0):
        raise SwatchError(f"--interval {interval:g}: give a number of seconds greater than 0")
    if top is not None and top < 1:
        raise SwatchError(f"--top {top}: show at least 1 row")
    session = PinnedSession.open(pin_dir)
    if sort in ("avg", "p99") and not session.latency_measured:
        session.close()
        raise SwatchError(f"--sort {sort}: the tracer at {pin_dir} was loaded with --no-latency "
                          "and does not measure latency")
    redraw = not once and not json_lines and out.isatty()
    try:
        while True:
            if json_lines:
                text = json.dumps(pinned_summary_json(session, by, sort, top)) + "\n"
            else:
                # redrawn in place: the top rows by the sort key that fit the terminal
                shown = rows_that_fit(shutil.get_terminal_size().lines, top) if redraw else top
                text = pinned_summary_text(session, by, sort, shown,
                                           "" if once else f" (every {interval:g}s)")
                if redraw:
                    text = "\033[H\033[2J" + text
            out.write(text)
            out.flush()
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
