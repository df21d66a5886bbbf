"""Where detect's counters come from: a tracer detect loads for the window (stats only: no
events, no ring-buffer consumer), or the tracer `swatch load` pinned."""

from __future__ import annotations

from pathlib import Path

from .. import libbpf
from ..libbpf import MapFd, lib
from ..tracer import LoadedTracer, PinnedSession, Target
from .counters import connect_syscall_nrs
from .observe import CounterMaps


def mark_connect(info_map: MapFd) -> None:
    """syscall_info[connect].detect = SW_DT_CONNECT (connects are counted by family)."""
    key = libbpf.new("uint32_t *")
    info = libbpf.new("struct sw_syscall_info *")
    for nr in connect_syscall_nrs():
        key[0] = nr
        if info_map.lookup(key, info):
            info.detect |= lib.SW_DT_CONNECT
            info_map.update(key, info)


def load_stats_tracer(target: Target) -> tuple[LoadedTracer, CounterMaps]:
    """A tracer on ``target`` that only counts (nothing is streamed), for one detect run;
    the caller closes it, which detaches everything."""
    tracer = LoadedTracer.load(target, "default", enabled=frozenset())
    try:
        mark_connect(tracer.maps["syscall_info"])
        maps = CounterMaps(tracer.maps["pid_stats"], tracer.obj.map("endpoints"),
                           tracer.obj.map("files_written"))
    except BaseException:
        tracer.close()
        raise
    return tracer, maps


def open_pinned(pin_dir: Path) -> tuple[PinnedSession, CounterMaps]:
    session = PinnedSession.open(pin_dir)
    try:
        maps = CounterMaps(session.maps["pid_stats"], session.maps["endpoints"],
                           session.maps["files_written"])
    except BaseException:
        session.close()
        raise
    return session, maps
