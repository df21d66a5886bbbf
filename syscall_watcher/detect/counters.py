"""swatch detect's inputs: differential snapshots of the tracer's in-kernel counters.

Every number comes from maps the tracer keeps in the kernel (per-process counts' detect fields,
``endpoints``, ``files_written``): nothing is derived from events, so a score is exact when the
ring buffer overflows and costs nothing per event here. A snapshot reads them; the difference
between two snapshots is what the target did in between.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from syscall_watcher.detect.dns import NameBook
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import MapFd, lib
from syscall_watcher.trace.pidstats import ProcessCounts

PID_FIELDS = ("count", "execs", "forks", "short_lived", "exited", "file_bytes_in",
              "file_bytes_out", "connects_tcp", "connects_udp", "connects_unix",
              "connects_other")
# How long a detect run's lease (SW_DETECT_LEASE) runs past its last renewal: detect renews it
# every STEP_S while it observes; a detect killed with SIGKILL stops the file-bytes counters
# and the DNS ring at most this long after (longer than the slowest snapshot, --all of a busy
# machine, takes).
LEASE_S = 10.0


class Lease:
    """detect's hold on the tracer's file-bytes counters and DNS ring (bpf/watcher.h
    SW_DETECT_LEASE): a deadline on CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns. Several
    detect runs on one pinned tracer each push it forward; none of them can leave it on."""

    def __init__(self, detect: MapFd) -> None:
        self.map = detect
        self.key = libbpf.new("uint32_t *", lib.SW_DETECT_LEASE)
        self.epoch_key = libbpf.new("uint32_t *", lib.SW_DETECT_EPOCH)
        self.until = 0  # what this run wrote last

    def _read(self) -> int:
        val = libbpf.new("uint64_t *")
        return int(val[0]) if self.map.lookup(self.key, val) else 0

    def renew(self) -> None:
        """Called every STEP_S while observing: one map read, a write twice per LEASE_S. A
        lease that had run out (or never was) starts a new epoch (SW_DETECT_EPOCH): the fd
        classes the kernel learned before are stale, nobody watched the closes since."""
        now = time.monotonic_ns()
        held = self._read()
        if held - now > LEASE_S * 1e9 / 2:
            return  # more than half of it left (ours, or another run's)
        if held <= now:
            epoch = libbpf.new("uint64_t *")
            self.map.lookup(self.epoch_key, epoch)
            self.map.update(self.epoch_key, libbpf.new("uint64_t *", epoch[0] + 1))
        self.until = now + int(LEASE_S * 1e9)
        self.map.update(self.key, libbpf.new("uint64_t *", self.until))

    def release(self) -> None:
        """End the lease now, unless another detect run has pushed it since (then it is
        theirs, and ends when they stop renewing it). If that other run is still observing,
        it writes a new lease at its next renewal (within STEP_S)."""
        if self.until and self._read() == self.until:
            self.map.update(self.key, libbpf.new("uint64_t *", 0))
        self.until = 0



@dataclass
class ProcCounters:
    comm: str
    sid: int
    ppid: int
    cgroup_id: int
    values: dict[str, int]


@dataclass
class Snapshot:
    procs: dict[int, ProcCounters]
    # (sid, family, port, address) → (connects, bpf_ktime_get_ns() of the latest)
    endpoints: dict[tuple[int, int, int, bytes], tuple[int, int]] = field(default_factory=dict)
    files: dict[tuple[int, int, int], tuple[int, int, str]] = field(default_factory=dict)
    evidence_full: int = 0   # evidence the kernel had no room for (endpoints/files_written)
    pid_stats_full: int = 0  # processes the kernel could not count (pid_stats full)


def _sum(vals, name: str) -> int:  # type: ignore[no-untyped-def]
    return sum(getattr(vals[c], name) for c in range(libbpf.NUM_CPUS))


def read_procs(processes: Callable[[], dict[int, ProcessCounts]]) -> dict[int, ProcCounters]:
    """The tracer's per-process counts (its Session.processes: trace/pidstats.py)."""
    return {tgid: ProcCounters(comm=pc.comm, sid=pc.sid, ppid=pc.ppid, cgroup_id=pc.cgroup_id,
                               values={f: pc.values[f] for f in PID_FIELDS})
            for tgid, pc in processes().items()}


def read_losses(counters: MapFd) -> tuple[int, int]:
    """(evidence_full, pid_stats_full), summed over CPUs."""
    key = libbpf.new("uint32_t *", 0)
    vals = libbpf.new("struct sw_counters[]", libbpf.NUM_CPUS)
    if not counters.lookup(key, vals):
        return 0, 0
    return _sum(vals, "evidence_full"), _sum(vals, "pid_stats_full")


def read_endpoints(m: MapFd) -> dict[tuple[int, int, int, bytes], tuple[int, int]]:
    out = {}
    val = libbpf.new("struct sw_endpoint_stat *")
    for key in list(m.keys("struct sw_endpoint_key *")):
        if m.lookup(key, val):
            k = key[0]
            out[(int(k.sid), int(k.family), int(k.port), bytes(k.addr))] = (
                int(val.connects), int(val.last_ns))
    return out


def read_files(m: MapFd) -> dict[tuple[int, int, int], tuple[int, int, str]]:
    out = {}
    val = libbpf.new("struct sw_file_stat *")
    for key in list(m.keys("struct sw_file_key *")):
        if m.lookup(key, val):
            k = key[0]
            name = bytes(libbpf.to_bytes(val.name)).split(b"\0", 1)[0]
            out[(int(k.sid), int(k.dev), int(k.ino))] = (
                int(val.bytes), int(val.writes), name.decode(errors="replace"))
    return out


def format_endpoint(family: int, port: int, addr: bytes) -> str:
    if family == socket.AF_INET:
        return f"{ipaddress.IPv4Address(addr[:4])}:{port}"
    return f"[{ipaddress.IPv6Address(addr[:16])}]:{port}"


def _packed(family: int, addr: bytes) -> bytes:
    return addr[:4] if family == socket.AF_INET else addr[:16]


def delta(before: Snapshot, after: Snapshot, pids: set[int] | None = None,
          sids: set[int] | None = None, names: NameBook | None = None) -> dict[str, object]:
    """What the processes in ``pids`` (or in sessions ``sids``; else every one) did between two
    snapshots: the totals of each counter, and the evidence (an endpoint with the name of the
    DNS answer, from ``names``, its latest connect followed)."""
    totals: Counter[str] = Counter()
    execs_by_comm: Counter[str] = Counter()
    for pid, now in after.procs.items():
        if pids is not None and pid not in pids:
            continue
        if sids is not None and now.sid not in sids:
            continue
        was = before.procs.get(pid)
        d = {f: now.values[f] - (was.values[f] if was else 0) for f in PID_FIELDS}
        totals.update({k: v for k, v in d.items() if v > 0})
        if d["execs"] > 0:
            execs_by_comm[now.comm] += d["execs"]
    endpoints: Counter[str] = Counter()
    endpoint_names: dict[str, str] = {}
    for (sid, fam, port, addr), (n, last_ns) in after.endpoints.items():
        if sids is not None and sid not in sids:
            continue
        gained = n - before.endpoints.get((sid, fam, port, addr), (0, 0))[0]
        if gained > 0:
            text = format_endpoint(fam, port, addr)
            endpoints[text] += gained
            name = names.name_of(_packed(fam, addr), last_ns, sids) if names else None
            if name:
                endpoint_names[text] = name
    files: Counter[str] = Counter()
    for key, (nbytes, _writes, name) in after.files.items():
        if sids is not None and key[0] not in sids:
            continue
        gained = nbytes - before.files.get(key, (0, 0, ""))[0]
        if gained > 0:
            files[name or f"inode {key[2]}"] += gained
    return {"totals": totals, "execs": execs_by_comm, "endpoints": endpoints,
            "endpoint_names": endpoint_names, "files": files}
