"""What a trace shows and how (strace's -e, -Z, -T, -t, -r, -s), decided once for a stream.

``select_syscalls`` turns ``--filter`` and ``-e`` into the set of syscalls that become events;
``TraceView`` tells the C formatter which records to write and in what style.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from syscall_watcher.kernel import libbpf, syscalls, uring
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.libbpf import lib

RECORD_TYPES = {"syscall": lib.SW_EV_SYSCALL, "exec": lib.SW_EV_EXEC, "fork": lib.SW_EV_FORK,
                "exit": lib.SW_EV_EXIT}
EXEC_CALLS = frozenset({"execve", "execveat"})
FORK_CALLS = frozenset({"fork", "vfork", "clone", "clone3"})
EXIT_CALLS = frozenset({"exit", "exit_group"})
# strace's classes (-e trace=%file …) → our groups (data/profiles.yaml)
CLASSES = {"process": ["process"], "network": ["network"], "net": ["network"],
           "file": ["file_open", "file_io", "file_meta", "file_stat"]}
# -t counted 0..3 → struct sw_fmt_opts.ts_style
TS_BY_T_COUNT = (lib.SW_TS_MS, lib.SW_TS_SEC, lib.SW_TS_US, lib.SW_TS_EPOCH)


@dataclass(frozen=True)
class Selection:
    """The syscalls that become events, and the process records shown with them."""

    syscalls: frozenset[str]
    record_types: frozenset[str]
    label: str            # for `status` (the profile name, or profile+-e)
    explicit: bool        # -e was given: the user picked calls by name
    profile: str

    @property
    def exec_view(self) -> bool:
        """Only program starts: the execsnoop view (ppid and result on every EXEC line)."""
        return bool(self.syscalls) and self.syscalls <= EXEC_CALLS


def _names(item: str) -> list[str]:
    table = syscalls.table()
    if item.startswith("%"):
        cls = item[1:]
        if cls not in CLASSES:
            raise SwatchError(f"-e {item}: unknown class; known: "
                              + ", ".join("%" + c for c in CLASSES))
        groups = syscalls.groups()
        return [n for g in CLASSES[cls] for n in groups[g] if n in table]
    if item not in table:
        close = difflib.get_close_matches(item, list(table), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise SwatchError(f"-e {item}: no such syscall on this kernel{hint}")
    return [item]


def select_syscalls(profile: str | None, exprs: list[str] | None) -> Selection:
    """``--filter`` and ``-e NAME,!NAME,%CLASS`` (repeatable; ``trace=`` accepted, as strace).

    Names picked with -e are added to an explicit ``--filter``; with no ``--filter`` they are
    the whole set. ``!NAME`` removes a call (from the default profile if nothing else picks).
    """
    positives: list[str] = []
    negatives: list[str] = []
    for expr in exprs or []:
        body = expr.removeprefix("trace=")
        for item in (x.strip() for x in body.split(",")):
            if not item:
                continue
            if item.startswith("!"):
                negatives += _names(item[1:])
            else:
                positives += _names(item)
    name = profile or "default"
    if profile is not None or not positives:
        base = syscalls.profile(name)  # validates the name
    else:
        base = frozenset()
    chosen = (base | frozenset(positives)) - frozenset(negatives)
    explicit = bool(exprs)
    if positives:
        types = {"syscall"}
        types |= {"exec"} if chosen & EXEC_CALLS else set()
        types |= {"fork"} if chosen & FORK_CALLS else set()
        types |= {"exit"} if chosen & EXIT_CALLS else set()
        if profile is not None:
            types |= set(syscalls.profile_events(name) or {"exec", "fork", "exit"})
    else:
        events = syscalls.profile_events(name)
        types = {"syscall", *(events if events is not None else ("exec", "fork", "exit"))}
    if explicit:
        label = (f"{profile}+" if profile else "") + ",".join(exprs or [])
    else:
        label = name
    return Selection(syscalls=chosen, record_types=frozenset(types), label=label[:31],
                     explicit=explicit, profile=name)


@dataclass(frozen=True)
class TraceView:
    """How a stream is written. The defaults are swatch's usual lines."""

    shown: frozenset[str] | None = None      # syscalls shown; None: all the tracer emits
    record_types: frozenset[str] = frozenset(RECORD_TYPES)
    failed_only: bool = False                # --failed / -Z
    show_duration: bool = False              # -T
    ts_style: int = lib.SW_TS_MS             # SW_TS_*: -t, -tt, -ttt, -r
    strsize: int = 0                         # -s N (0: whole strings)
    ancestry: bool = False                   # --ancestry
    exec_view: bool = False                  # ppid and result on EXEC lines
    fold_startup: bool = False               # fold ld.so/locale start-up into EXEC lines

    @classmethod
    def for_selection(cls, sel: Selection, *, json: bool, **kw: object) -> TraceView:
        """The view of a stream whose tracer was loaded with this selection."""
        fold = not json and not sel.explicit and sel.profile != "all" and not sel.exec_view
        return cls(shown=sel.syscalls if sel.explicit else None, record_types=sel.record_types,
                   exec_view=sel.exec_view, fold_startup=fold, **kw)  # type: ignore[arg-type]

    def apply(self) -> None:
        """Configure the C formatter (after stream._setup_formatter set its tables)."""
        if self.shown is not None:
            sc, errs = syscalls.format_tables()
            hidden = {nr: (name, verb, flags | syscalls.FMT_HIDDEN if name not in self.shown
                           else flags) for nr, (name, verb, flags) in sc.items()}
            ops = {code: (name, verb, flags | syscalls.FMT_HIDDEN
                          if uring.OPS[code].syscall not in self.shown else flags)
                   for code, (name, verb, flags) in uring.format_table().items()}
            libbpf.set_format_tables(hidden, errs, ops)
        libbpf.set_format_options(
            ts_style=self.ts_style, show_duration=self.show_duration,
            failed_only=self.failed_only, ancestry=self.ancestry, exec_view=self.exec_view,
            fold_startup=self.fold_startup,
            show_types=frozenset(RECORD_TYPES[t] for t in self.record_types)
            | (frozenset({lib.SW_EV_URING}) if "syscall" in self.record_types else frozenset()),
            strsize=self.strsize)


@dataclass(frozen=True)
class ViewOptions:
    """The strace-style display options of `watch` and `run`, as the user gave them."""

    json: bool = False
    failed_only: bool = False     # -Z
    show_duration: bool = False   # -T
    t_count: int = 0              # -t, -tt, -ttt
    relative: bool = False        # -r
    strsize: int = 0              # -s N
    ancestry: bool = False        # --ancestry

    def for_selection(self, sel: Selection) -> TraceView:
        """The view of a tracer loaded with ``sel`` (`run`, or `watch` with -e)."""
        return TraceView.for_selection(sel, json=self.json, failed_only=self.failed_only,
                                       show_duration=self.show_duration,
                                       ts_style=ts_style(self.t_count, self.relative),
                                       strsize=self.strsize, ancestry=self.ancestry)

    def for_loaded(self, loaded: str, exprs: list[str] | None) -> TraceView:
        """`watch` filters in the formatter: -e NAME shows only those of the loaded tracer's
        events; -e !NAME hides some; start-up folding as for the profile loaded (``loaded``
        is the label the tracer was loaded with)."""
        profile = loaded if loaded in syscalls.profile_names() else None
        positives = any(not x.startswith("!") for e in exprs or [] for x in
                        e.removeprefix("trace=").split(",") if x.strip())
        if exprs or profile:
            return self.for_selection(select_syscalls(None if positives else profile, exprs))
        # loaded with -e: show what it emits, unfolded (its events were picked by name)
        return TraceView(failed_only=self.failed_only, show_duration=self.show_duration,
                         ts_style=ts_style(self.t_count, self.relative), strsize=self.strsize,
                         ancestry=self.ancestry)


def use_color(mode: str, stream: object) -> bool:
    """--color auto|always|never for a stream: auto colours a terminal unless NO_COLOR."""
    if mode == "always":
        return True
    if mode == "never" or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def ts_style(t_count: int, relative: bool) -> int:
    """-t/-tt/-ttt (counted) and -r → struct sw_fmt_opts.ts_style."""
    if relative:
        if t_count:
            raise SwatchError("-r and -t are different timestamp styles: choose one")
        return lib.SW_TS_REL
    if t_count >= len(TS_BY_T_COUNT):
        raise SwatchError("-t can be given at most 3 times (-ttt: seconds since the epoch)")
    return TS_BY_T_COUNT[t_count]
