"""What a run leaves: results.json, the tables on stdout, the README's tables as Markdown
(results.md, in the layout of the project README's Benchmarks section) and the chart (PNG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(x: Any, spec: str = "{:,.1f}", none: str = "-") -> str:
    if x is None:
        return none
    try:
        return spec.format(x)
    except (ValueError, TypeError):
        return str(x)


def _mb(kb: Any) -> str:
    return fmt(kb / 1024 if kb else None, "{:.1f}")


def _not_ok(s: dict[str, Any]) -> str:
    word = "SKIPPED" if s.get("status") == "skipped" else "FAILED"
    reason = " | ".join(x.strip() for x in str(s.get("reason", "")).splitlines() if x.strip())
    return f"{word}: {reason[:110]}"


def write_json(res: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(res, indent=1, default=str) + "\n")


def print_tables(res: dict[str, Any]) -> None:
    out = []
    for wname, w in res.get("workloads", {}).items():
        out.append(f"\n== {wname}: {w['desc']}  (best peer: {w.get('best_peer', '-')})")
        out.append(f"{'setup':30s} {'calls':>9s} {'ns/call':>11s} {'+ns/call':>10s} "
                   f"{'x untr':>8s} {'x best':>7s} {'trc cpu s':>9s} {'rss MB':>7s} "
                   f"{'kids':>7s}  status")
        for name, s in w["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:30s} {'':>76s}  {_not_ok(s)}")
                continue
            kids = ("-" if "median_children_seen" not in s
                    else f"{s['median_children_seen']:.0f}/{s.get('children_expected', '?')}")
            out.append(
                f"{name:30s} {fmt(s.get('calls'), '{:,}'):>9s} "
                f"{fmt(s['median_ns_per_call']):>11s} {fmt(s.get('added_ns_per_call')):>10s} "
                f"{fmt(s.get('vs_untraced'), '{:.2f}'):>8s} "
                f"{fmt(s.get('vs_best_peer'), '{:.2f}'):>7s} "
                f"{fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} "
                f"{_mb(s.get('max_tracer_maxrss_kb')):>7s} {kids:>7s}  ok {s['runs_ok']}"
                + (f" (+{s['runs_failed']} failed)" if s["runs_failed"] else "")
                + (f"; missed {s['max_own_syscall_missed']} of its own syscall"
                   if s.get("max_own_syscall_missed") else ""))
    b = res.get("bystander")
    if b:
        out.append(f"\n== bystander: {b['desc']}")
        out.append(f"{'tracer on another pid':40s} {'ns/call':>10s} {'x none':>8s} {'+ns':>8s} "
                   f"{'trc cpu s':>9s} {'rss MB':>7s}")
        for name, s in b["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:40s} {_not_ok(s)}")
                continue
            out.append(f"{name:40s} {fmt(s['median_ns_per_call']):>10s} "
                       f"{fmt(s.get('vs_untraced'), '{:.2f}'):>8s} "
                       f"{fmt(s.get('added_ns_per_call')):>8s} "
                       f"{fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} "
                       f"{_mb(s.get('max_tracer_maxrss_kb')):>7s}")
    st = res.get("streaming")
    if st:
        out.append(f"\n== streaming: {st['desc']}")
        out.append(f"{'setup':24s} {'delivered':>10s} {'dropped':>9s} {'wall s':>8s} "
                   f"{'events/s':>12s} {'ns/call':>10s} {'trc cpu s':>9s} {'rss MB':>7s}")
        for name, s in st["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:24s} {_not_ok(s)}")
                continue
            out.append(f"{name:24s} {fmt(s.get('median_delivered'), '{:,.0f}'):>10s} "
                       f"{fmt(s.get('median_dropped'), '{:,.0f}'):>9s} "
                       f"{fmt(s.get('median_wall_s'), '{:.2f}'):>8s} "
                       f"{fmt(s.get('median_events_per_s'), '{:,.0f}'):>12s} "
                       f"{fmt(s['median_ns_per_call']):>10s} "
                       f"{fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} "
                       f"{_mb(s.get('max_tracer_maxrss_kb')):>7s}")
    out += _programs_lines(res.get("programs"), markdown=False)
    print("\n".join(out), flush=True)


def _programs_lines(p: dict[str, Any] | None, markdown: bool) -> list[str]:
    """Per-program BPF cost: one line per storm and tracer."""
    if not p:
        return []
    if "skipped" in p:
        return [f"\n== programs: SKIPPED: {p['skipped']}"]
    if markdown:
        lines = [f"| {p['desc']} | BPF ns per call | program: ns per run (runs per call) |",
                 "|---|---|---|"]
    else:
        lines = [f"\n== programs: {p['desc']}",
                 f"{'storm':8s} {'tracer':22s} {'BPF ns/call':>11s}  program: ns/run (runs/call)"]
    for wname, by_setup in p.get("summary", {}).items():
        for name, s in by_setup.items():
            if s.get("status") != "ok":
                text = f"{s.get('status', '?').upper()}: {str(s.get('reason', ''))[:100]}"
                lines.append(f"| {wname}: {name} | {text} | |" if markdown
                             else f"{wname:8s} {name:22s} {text}")
                continue
            progs = ", ".join(f"{n} {v['median_ns_per_run']:,.0f} "
                              f"({v['median_runs_per_call']:.2f})"
                              for n, v in s["programs"].items())
            ns = fmt(s["median_bpf_ns_per_call"])
            lines.append(f"| {wname}: {name} | {ns} | {progs} |" if markdown
                         else f"{wname:8s} {name:22s} {ns:>11s}  {progs}")
    return lines


# ------------------------------------------------------------------ README tables (Markdown)
README_ROWS = [  # README label, setup name
    ("untraced", "untraced"),
    ("**swatch, stats only**", "swatch stats"),
    ("**swatch, stats only, `load --pid`**", "swatch load --pid"),
    ("**swatch, stats only, `--no-latency`**", "swatch stats --no-latency"),
    ("**swatch, stats only, `load --pid --no-latency`**", "swatch load --pid --no-latency"),
    ("**swatch, every event to JSON lines**", "swatch json"),
    ("libbpf-tools `syscount -p`", "syscount -p"),
    ("libbpf-tools `syscount -p -L` (with latency)", "syscount -p -L"),
    ("bpftrace, count into a map", "bpftrace count"),
    ("bpftrace, `printf` per event", "bpftrace printf"),
    ("`perf trace`", "perf trace"),
    ("`strace -fc`", "strace -fc"),
    ("`strace -f`", "strace -f"),
]


def _cell(wname: str, setup: str, s: dict[str, Any] | None) -> str:
    if s is None:  # left out of this run (--only, --setups)
        return "not run"
    if s.get("status") != "ok":
        return "skipped" if s.get("status") == "skipped" else "failed"
    ratio = s.get("vs_untraced")
    r = "1×" if setup == "untraced" or ratio is None else f"{ratio:.2f}×"
    if wname == "forkexec":
        kids = s.get("median_children_seen")
        seen = (f" ({kids:.0f}/{s.get('children_expected', '?')})" if kids is not None
                else " (parent only)" if "parent only" in s.get("note", "") else "")
        if setup == "untraced":
            return f"{s['median_ns_per_call'] / 1000:,.0f} µs (1×)"
        return f"{r}{seen}"
    return f"{s['median_ns_per_call']:,.0f} ({r})"


def markdown(res: dict[str, Any]) -> str:
    """The tables of the README's Benchmarks section, filled from this run."""
    m = res["meta"]
    lines = [f"Run: {m['date']}, {m['cpus']} CPUs, kernel {m['kernel']}, "
             f"{m['runs_per_setup']} interleaved runs per setup, medians"
             + (" (QUICK: small sizes, few runs)" if m.get("quick") else "") + ".", ""]
    wls = res.get("workloads", {})
    heads = {"read": "1-byte `read`", "getppid": "`getppid`", "fileio": "open+read 4 KiB+close",
             "forkexec": "fork+exec (children seen)"}
    cols = [w for w in ("read", "getppid", "fileio", "forkexec") if w in wls]
    if cols:
        lines.append("| ns per call (× untraced) | " + " | ".join(heads[c] for c in cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        left_out = []
        for label, setup in README_ROWS:
            cells = [_cell(c, setup, wls[c]["summary"].get(setup)) for c in cols]
            if all(cell == "not run" for cell in cells):
                left_out.append(setup)
                continue
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        if left_out:
            lines += ["Not run (`--setups`): " + ", ".join(f"`{n}`" for n in left_out) + ".",
                      ""]
    b = res.get("bystander")
    if b:
        lines += ["| bystander: `getppid` in a process nobody traces | ns per call | added "
                  "| × none |", "|---|---|---|---|"]
        for name, s in b["summary"].items():
            if s.get("status") != "ok":
                lines.append(f"| {name} | {s.get('status')} | | |")
                continue
            added = s.get("added_ns_per_call")
            cells = ("—", "1×") if not added else (f"{added:,.0f} ns", f"{s['vs_untraced']:.2f}×")
            lines.append(f"| {name} | {s['median_ns_per_call']:,.0f} | {cells[0]} | {cells[1]} |")
        lines.append("")
    st = res.get("streaming")
    if st:
        lines += [f"| streaming {st['calls']:,} read events to a file (start-up and drain "
                  "included) | events/s | dropped |", "|---|---|---|"]
        for name, s in st["summary"].items():
            if s.get("status") != "ok":
                lines.append(f"| {name} | {s.get('status')} | |")
                continue
            lines.append(f"| {name} | {fmt(s.get('median_events_per_s'), '{:,.0f}')} | "
                         f"{fmt(s.get('median_dropped'), '{:,.0f}')} |")
        lines.append("")
    lines += _programs_lines(res.get("programs"), markdown=True)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ chart
def write_chart(res: dict[str, Any], path: Path) -> str | None:
    """The PNG; None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return (f"matplotlib is not importable by {sys.executable} ({e}); `sudo make bench-deps` "
                "installs it into .venv: run with .venv/bin/python")
    wls = res.get("workloads", {})
    b, st = res.get("bystander"), res.get("streaming")
    panels = len(wls) + (1 if b else 0) + (1 if st else 0)
    if panels == 0:
        return "nothing to chart"
    rows = (panels + 1) // 2
    fig, grid = plt.subplots(rows, 2, figsize=(14, 4.2 * rows), squeeze=False)
    axes = iter([a for row in grid for a in row])

    def colour(name: str) -> str:
        if name.startswith("swatch"):
            return "tab:green"
        return "tab:gray" if name.startswith(("untraced", "none")) else "tab:blue"

    def panel(summary: dict[str, Any], key: str, title: str, label: Any) -> Any:
        ax = next(axes)
        names = [n for n, s in summary.items() if s.get("status") == "ok"]
        vals = [summary[n].get(key) or 0 for n in names]
        bars = ax.barh(names, vals, color=[colour(n) for n in names])
        ax.set_title(title)
        ax.invert_yaxis()
        for bar, v, n in zip(bars, vals, names):
            ax.text(v, bar.get_y() + bar.get_height() / 2, label(v, n), va="center", fontsize=8)
        failed = [n for n, s in summary.items() if s.get("status") != "ok"]
        if failed:
            ax.set_xlabel("not run: " + ", ".join(failed), fontsize=8, color="tab:red")
        return ax

    for wname, w in wls.items():
        ax = panel(w["summary"], "vs_untraced",
                   f"{wname}: slowdown vs untraced (own-loop ns/call, median)",
                   lambda v, _n: f" {v:.2f}x")
        ax.set_xscale("log")
    if b:
        panel(b["summary"], "median_ns_per_call",
              "bystander: untraced getppid ns/call while tracing another pid",
              lambda v, _n: f" {v:.0f}")
    if st:
        panel(st["summary"], "median_events_per_s",
              "streaming: events delivered per second of tracer wall time",
              lambda v, n: f" {v:,.0f}/s, dropped "
                           f"{st['summary'][n].get('median_dropped') or 0:,.0f}")
    for ax in axes:
        ax.axis("off")
    m = res["meta"]
    fig.suptitle(f"swatch bench — {m['kernel']} — {m['cpus']} CPUs — {m['runs_per_setup']} "
                 f"interleaved runs, medians{' (QUICK)' if m['quick'] else ''}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None
