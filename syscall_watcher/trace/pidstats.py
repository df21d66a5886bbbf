"""Per-process counts from the tracer's maps, each process counted once (bpf/watcher.bpf.c).

A live process is counted in its slot of ``pid_stats`` (a per-CPU array; ``pid_slot`` maps its
tgid to the slot, the slot's generation and the process's number ``inst``). When its last
thread exits, the kernel sums the slot's copies into ``pid_done`` under (tgid, inst), then moves
every copy to the next generation and gives the slot back. A process that found no free slot
is counted in ``pid_done`` under (tgid, 0) as it runs.

Read without a lock, in this order: the live slots, then ``pid_done``. A slot whose copies are
not all of the generation ``pid_slot`` named has changed hands meanwhile: its process is in
``pid_done`` by then (the kernel writes it there first). A live process also found in
``pid_done`` under its own inst was summed there between the two reads: counted from there.
So no process is counted twice, and no slot's next holder is counted as its previous one.

Memory (the loader's sizes): pid_stats is preallocated, slots x sizeof(struct sw_pid_stat) x
possible CPUs; pid_slot and free_slots a few dozen bytes per slot; pid_done grows with the
processes that exited (or ran without a slot), up to --max-pids entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import MapFd

# Summed over CPUs and over a pid's processes (a reused pid adds up, as it always has).
SUM_FIELDS = ("count", "errors", "bytes_in", "bytes_out", "total_ns", "execs", "forks",
              "short_lived", "exited", "file_bytes_in", "file_bytes_out", "connects_tcp",
              "connects_udp", "connects_unix", "connects_other")
# Set when a process is first counted: the largest wins (the other copies hold 0).
MAX_FIELDS = ("cgroup_id", "sid", "ppid")

# What --stats-slots defaults to: as many slots as fit in this many bytes of per-CPU copies,
# at most DEFAULT_SLOTS_CAP (live processes at once; more are counted in pid_done, exactly,
# at a higher cost per call), at least DEFAULT_SLOTS_MIN.
DEFAULT_SLOTS_BYTES = 8 << 20
DEFAULT_SLOTS_CAP = 4096
DEFAULT_SLOTS_MIN = 32


def slot_bytes(cpus: int | None = None) -> int:
    """Bytes one slot of pid_stats takes: a copy per possible CPU (values rounded up to 8)."""
    size = (libbpf.ffi.sizeof("struct sw_pid_stat") + 7) & ~7
    return size * (cpus if cpus is not None else libbpf.NUM_CPUS)


def default_slots(max_pids: int, cpus: int | None = None) -> int:
    """--stats-slots' default for this machine: DEFAULT_SLOTS_BYTES worth of slots."""
    n = max(DEFAULT_SLOTS_MIN, min(DEFAULT_SLOTS_CAP, DEFAULT_SLOTS_BYTES // slot_bytes(cpus)))
    return min(n, max_pids)


def memory_bytes(slots: int, cpus: int | None = None) -> int:
    """The preallocated part of the per-process counts: pid_stats, pid_slot, free_slots and
    detect's fd_classes (pid_done comes on top, as processes exit: about 250 bytes each)."""
    return max(slots, 1) * (slot_bytes(cpus) + 96 + 8
                            + libbpf.ffi.sizeof("struct sw_fd_classes"))


@dataclass
class ProcessCounts:
    comm: str = ""
    comm_ns: int = 0
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUM_FIELDS, 0))
    cgroup_id: int = 0
    sid: int = 0
    ppid: int = 0

    def add(self, v) -> None:  # type: ignore[no-untyped-def]
        """Add one value (a struct sw_pid_stat: a CPU's copy or a pid_done entry)."""
        for f in SUM_FIELDS:
            self.values[f] += getattr(v, f)
        for f in MAX_FIELDS:
            setattr(self, f, max(getattr(self, f), int(getattr(v, f))))
        if v.comm_ns > self.comm_ns:  # named last: the current name (first syscall, execs)
            self.comm_ns = int(v.comm_ns)
            self.comm = bytes(libbpf.to_bytes(v.comm)).split(b"\0", 1)[0].decode(
                errors="replace")


def read_processes(pid_slot: MapFd, pid_stats: MapFd, pid_done: MapFd) -> dict[int, ProcessCounts]:
    """Every process counted, by tgid (the module's docstring says why each is counted once)."""
    cpus = range(libbpf.NUM_CPUS)
    live: dict[tuple[int, int], list] = {}  # type: ignore[type-arg]
    ent = libbpf.new("struct sw_pid_slot *")
    slot = libbpf.new("uint32_t *")
    for key in list(pid_slot.keys("uint32_t *")):
        if not pid_slot.lookup(key, ent):
            continue  # folded and gone since the key walk: in pid_done below
        slot[0] = ent.slot
        copies = libbpf.new("struct sw_pid_stat[]", libbpf.NUM_CPUS)
        if not pid_stats.lookup(slot, copies):
            continue
        if any(copies[c].gen != ent.gen for c in cpus):
            continue  # the slot changed hands: the process is in pid_done below
        live[(int(key[0]), int(ent.inst))] = copies  # the array: copies[c] does not own it
    out: dict[int, ProcessCounts] = {}
    done = libbpf.new("struct sw_pid_stat *")
    folded = set()
    for key in list(pid_done.keys("struct sw_pid_key *")):
        if not pid_done.lookup(key, done):
            continue
        tgid, inst = int(key[0].tgid), int(key[0].inst)
        out.setdefault(tgid, ProcessCounts()).add(done)
        folded.add((tgid, inst))
    for (tgid, inst), copies in live.items():
        if (tgid, inst) in folded:
            continue  # summed into pid_done between the two reads
        pc = out.setdefault(tgid, ProcessCounts())
        for c in cpus:
            pc.add(copies[c])
    return out
