"""Tables of the in-kernel counters: the end-of-run summary and `swatch summary`."""

from __future__ import annotations

import os

from . import syscalls


def human_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_run_summary(argv: list[str], result) -> str:  # type: ignore[no-untyped-def]
    """The few lines `swatch run` prints to stderr when CMD has exited."""
    stats = result.tracer_stats
    total = sum(s["count"] for s in stats.values())
    errors = sum(s["errors"] for s in stats.values())
    names = syscalls.names()
    top = sorted(stats.items(), key=lambda kv: -kv[1]["count"])[:8]
    lines = [
        f"swatch: {os.path.basename(argv[0])} exited with code {result.exit_code} after "
        f"{result.wall_s:.2f}s; {len(result.pid_stats)} process(es), {total:,} syscalls, "
        f"{errors:,} errors",
        "swatch: top syscalls: "
        + ", ".join(f"{names.get(nr, nr)} {s['count']:,}" for nr, s in top),
        f"swatch: events delivered={result.delivered} dropped={result.dropped} "
        f"emitted={result.emitted}",
    ]
    return "\n".join(lines) + "\n"
