"""swatch detect's human output: the score, the verdict, one bar per signal, the evidence."""

from __future__ import annotations

from typing import TextIO

from syscall_watcher.detect.observe import Result

BAR_FULL, BAR_EMPTY = "█", "░"


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f} {unit}" if v < 100 else f"{v:,.0f} {unit}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def render(r: Result) -> str:
    lines = [f"swatch detect — {r.target}: {r.samples} samples over {r.window_s:.1f} s", "",
             f"Score {r.score}/100 — {r.verdict}", ""]
    for s in r.signals:
        bar = BAR_FULL * s.points + BAR_EMPTY * (s.max - s.points)
        value = _value(s.value, s.unit)
        lines.append(f"  {s.label:<22} {value:<24} [{s.points:>2}/{s.max}]  {bar}")
    ev = r.evidence
    lines.append("")
    lines.append("Evidence")
    rows = (
        ("programs run", ", ".join(f"{e['program']} ×{e['count']}" for e in ev["top_execs"])),
        ("connected to", ", ".join(f"{e['endpoint']} ×{e['connects']}"
                                   for e in ev["remote_endpoints"])),
        ("files written", ", ".join(f"{e['file']} ({_size(e['bytes'])})"  # type: ignore[arg-type]
                                    for e in ev["files_written"])),
    )
    for label, text in rows:
        lines.append(f"  {label:<14} {text or '-'}")
    for note in r.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def one_line(r: Result) -> str:
    """--watch: one line per window."""
    parts = " ".join(f"{s.name}={s.points}" for s in r.signals)
    notes = f"  ({'; '.join(r.notes)})" if r.notes else ""
    return f"{r.score:>3}/100 {r.verdict:<16} {r.window_s:5.1f}s  {parts}{notes}"


def ranking(results: list[tuple[int, int, Result]]) -> str:
    """--all: (session id, processes, result), best first."""
    lines = [f"{'SCORE':>5}  {'VERDICT':<16} {'SESSION':>8} {'PROCS':>5}  TREE"]
    for sid, nprocs, r in results:
        lines.append(f"{r.score:>5}  {r.verdict:<16} {sid:>8} {nprocs:>5}  {r.target}")
    return "\n".join(lines) + "\n"


class Progress:
    """A one-line progress indicator on a terminal (stderr), redrawn in place, erased at the end."""

    def __init__(self, stream: TextIO, total_s: float, width: int = 30) -> None:
        self.stream, self.total, self.width = stream, total_s, width

    def __call__(self, sample: int, elapsed: float) -> None:
        done = min(1.0, elapsed / self.total) if self.total > 0 else 1.0
        n = int(done * self.width)
        self.stream.write(f"\r  observing {elapsed:5.1f}/{self.total:.0f} s "
                          f"{BAR_FULL * n}{BAR_EMPTY * (self.width - n)}")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()
