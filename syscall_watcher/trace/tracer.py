"""The tracer's lifecycle: load (in-process or pinned), open pins, read counters, unload."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.data import built_object
from syscall_watcher.kernel import libbpf, syscalls, uring
from syscall_watcher.errors import SwatchError
from syscall_watcher.kernel.component import (
    Component,
    LoadedComponent,
    PinnedComponent,
    PinState,
    pin_dir_from,
)
from syscall_watcher.kernel.libbpf import BpfObject, Link, MapSet, lib
from syscall_watcher.kernel.system import require_btf, require_root
from syscall_watcher.targets.process import (
    PidFd,
    add_existing,
    descendants,
    pid_exists,
    thread_pidfds,
)
from syscall_watcher.targets.target import Target, max_pids_for
from syscall_watcher.trace.pidstats import ProcessCounts, default_slots, read_processes

__all__ = ["descendants", "pid_exists"]  # re-exported: older callers import them from here

VERSION = 3  # meta.version; 2: meta carries the link mask and is pinned last; 3: meta.flags
DEFAULT_PIN_DIR = "/sys/fs/bpf/syscall_watcher"
DEFAULT_RING_SIZE = 16 << 20
# `swatch run`'s ring: the consumer maps the ring twice over (libbpf, for records that wrap),
# so its pages are 2 x the ring of a run's resident memory; 8 MiB streams a read storm with no
# drop (bench/README.md, "Streaming and start-up") and keeps a streaming run under 64 MB.
RUN_RING_SIZE = 8 << 20
MAX_RING_SIZE = 1 << 30  # a sane bound: the ring is locked kernel memory

# Program name → pin name under <pin dir>/links/
PROGRAMS = {
    "sw_sys_enter": "sys_enter",
    "sw_sys_exit": "sys_exit",
    "sw_exec": "sched_process_exec",
    "sw_fork": "sched_process_fork",
    "sw_exit": "sched_process_exit",
    # io_uring (bpf/watcher_uring.bpf.h): optional, loaded where the kernel has them
    "sw_uring_submit_req": "io_uring_submit_req",
    "sw_uring_submit_sqe": "io_uring_submit_sqe",
    "sw_uring_complete": "io_uring_complete",
}
URING_PROGRAMS = ("sw_uring_submit_req", "sw_uring_submit_sqe", "sw_uring_complete")
# Maps userspace opens later (pinned under <pin dir>/maps/), with their key/value C types.
MAPS = {
    "events": (None, None),
    "pid_filter": ("uint32_t", "uint8_t"),
    "pid_range": ("uint32_t", "struct sw_pid_range"),
    "syscall_info": ("uint32_t", "struct sw_syscall_info"),
    "stats": ("uint32_t", "struct sw_stat"),
    "pid_stats": ("uint32_t", "struct sw_pid_stat"),
    "pid_slot": ("uint32_t", "struct sw_pid_slot"),
    "free_slots": (None, "uint64_t"),
    "pid_alloc": ("uint32_t", "struct sw_pid_alloc"),
    "pid_done": ("struct sw_pid_key", "struct sw_pid_stat"),
    "counters": ("uint32_t", "struct sw_counters"),
    "state": ("uint32_t", "struct sw_state"),
    "meta": ("uint32_t", "struct sw_meta"),
    "pending": ("int", "struct sw_task"),
    # swatch detect's evidence (syscall_watcher/detect)
    "endpoints": ("struct sw_endpoint_key", "struct sw_endpoint_stat"),
    "files_written": ("struct sw_file_key", "struct sw_file_stat"),
    "detect": ("uint32_t", "uint64_t"),  # the lease, the DNS ring's count (SW_DETECT_*)
    "dns_answers": ("uint32_t", "struct sw_dns_answer"),
    "fd_classes": ("uint32_t", "struct sw_fd_classes"),  # per slot: what its fds are
    # io_uring operations: per-opcode rules and counts
    "uring_info": ("uint32_t", "struct sw_uring_info"),
    "uring_stats": ("uint32_t", "struct sw_stat"),
}
# Numbers from bpf/watcher.h through cffi, never copied (tests/test_constants.py ties the names).
EV_NAMES = {lib.SW_EV_SYSCALL: "syscall", lib.SW_EV_EXEC: "exec", lib.SW_EV_FORK: "fork",
            lib.SW_EV_EXIT: "exit", lib.SW_EV_URING: "io_uring"}
MODE_NAMES = {lib.SW_TARGET_ALL: "all", lib.SW_TARGET_PID: "pid", lib.SW_TARGET_COMM: "comm",
              lib.SW_TARGET_UID: "uid", lib.SW_TARGET_CGROUP: "cgroup"}
MODE_IDS = {v: k for k, v in MODE_NAMES.items()}


def uring_programs() -> list[str]:
    """The io_uring programs this kernel can take: a submission hook (io_uring_submit_req from
    6.4, io_uring_submit_sqe before) and io_uring_complete; none without both (a kernel built
    without io_uring). The tracer works the same without them, blind to io_uring."""
    have = libbpf.kernel_has_tracepoints(*(PROGRAMS[p] for p in URING_PROGRAMS))
    submit = next((p for p in ("sw_uring_submit_req", "sw_uring_submit_sqe")
                   if have[PROGRAMS[p]]), None)
    if submit is None or not have["io_uring_complete"]:
        return []
    return [submit, "sw_uring_complete"]


def pin_dir_default(value: str | Path | None = None) -> Path:
    """--pin-dir's value, else $SWATCH_PIN_DIR, else the default; empty is an error."""
    return pin_dir_from(value, "SWATCH_PIN_DIR", DEFAULT_PIN_DIR)


def bpf_object_path() -> Path:
    return built_object("watcher.bpf.o", "SWATCH_BPF_OBJ")


TRACER = Component(
    kind="tracer", noun="pins", maps=tuple(MAPS), links=tuple(PROGRAMS.values()),
    version=VERSION, meta_type="struct sw_meta", object_path=bpf_object_path,
    unload_cmd="swatch unload", load_hint="swatch load --pid PID",
    sized_at_load=("pid_stats", "fd_classes"),  # --stats-slots
)


@dataclass
class Counters:
    emitted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    pid_filter_full: int = 0  # children not listed in pid_filter (traced all the same)
    pid_stats_full: int = 0   # processes not counted per process
    pid_slots_full: int = 0   # processes counted without a slot (in pid_done as they ran)
    pid_slots_kept: int = 0   # exited processes left in their slot (pid_done full)
    untracked: int = 0        # children that could not be marked at fork: not traced
    uring_submitted: int = 0  # io_uring requests of traced processes submitted
    uring_completed: int = 0  # ... and seen completing
    wakeups: int = 0          # records that woke the consumer (watcher.bpf.c output())

    @property
    def total_emitted(self) -> int:
        return sum(self.emitted.values())

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())


def membership_warnings(counters: Counters, max_pids: int, pid_slots: int = 0) -> list[str]:
    """What the kernel could not record about the target's processes (or recorded at a
    higher cost), in words."""
    out = []
    if counters.untracked:
        out.append(f"{counters.untracked:,} new processes/threads could not be marked at fork "
                   "(out of memory) and are NOT traced")
    if counters.pid_stats_full:
        out.append(f"{counters.pid_stats_full:,} processes not counted per process "
                   f"(pid_done full at {max_pids:,}; --max-pids)")
    if counters.pid_slots_full:
        out.append(f"{counters.pid_slots_full:,} processes counted without a slot (all "
                   f"{pid_slots:,} taken; --stats-slots): exact, at a higher cost per call")
    if counters.pid_slots_kept:
        out.append(f"{counters.pid_slots_kept:,} exited processes kept their slot (pid_done "
                   f"full at {max_pids:,}; --max-pids)")
    if counters.pid_filter_full:
        out.append(f"{counters.pid_filter_full:,} children not listed in pid_filter (full at "
                   f"{max_pids:,}; --max-pids); they are traced all the same")
    return out


def wakeup_threshold(ring_size: int, wakeup_bytes: int | None = None) -> int:
    """The kernel wakes the consumer each time this many bytes have been sent (and after a
    quiet spell: watcher.bpf.c output()): ``wakeup_bytes`` (0: every record) rounded down to a
    power of two, by default an eighth of the ring up to 256 KiB."""
    n = min(ring_size // 8, 256 << 10) if wakeup_bytes is None else wakeup_bytes
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def pid_slots_for(target: Target, max_pids: int) -> int:
    """Slots in pid_stats: --stats-slots, else what DEFAULT_SLOTS_BYTES hold on this machine."""
    if target.stats_slots is None:
        return default_slots(max_pids)
    if not 0 <= target.stats_slots <= max_pids:
        raise SwatchError(f"--stats-slots {target.stats_slots}: choose 0 to {max_pids} "
                          "(--max-pids)")
    return target.stats_slots


class Session(MapSet):
    """A tracer's maps, either from an object loaded by this process or from pins."""

    MAP_TYPES = MAPS

    def state(self) -> tuple[bool, int]:
        st = self._one("state")[1]
        return bool(st.streaming), int(st.consumer_pid)

    def set_streaming(self, on: bool, consumer_pid: int) -> None:
        key, st = self._one("state")
        st.streaming = 1 if on else 0
        st.consumer_pid = consumer_pid if on else 0
        self.maps["state"].update(key, st)

    def last_step(self) -> int:
        """--agent: the last step id a consumer of this load gave (0: none yet)."""
        return int(self._one("state")[1].last_step)

    def set_last_step(self, step: int) -> None:
        """Kept in the tracer's state map, so a later consumer's step ids go on from it."""
        key, st = self._one("state")
        st.last_step = step
        self.maps["state"].update(key, st)

    def counters(self) -> Counters:
        vals = self._one_per_cpu("counters")
        out = Counters()
        for t, name in EV_NAMES.items():
            out.emitted[name] = vals.sum("emitted", t)
            out.dropped[name] = vals.sum("dropped", t)
        out.pid_filter_full = vals.sum("pid_filter_full")
        out.pid_stats_full = vals.sum("pid_stats_full")
        out.pid_slots_full = vals.sum("pid_slots_full")
        out.pid_slots_kept = vals.sum("pid_slots_kept")
        out.untracked = vals.sum("untracked")
        out.uring_submitted = vals.sum("uring_submitted")
        out.uring_completed = vals.sum("uring_completed")
        out.wakeups = vals.sum("wakeups")
        return out

    def pids(self) -> list[int]:
        return sorted(int(k[0]) for k in self.maps["pid_filter"].keys("uint32_t *"))

    def add_pid(self, pid: int) -> None:
        key, rng = self._one("pid_range")
        if rng.lo > rng.hi:  # empty
            rng.lo = rng.hi = pid
        else:
            rng.lo, rng.hi = min(rng.lo, pid), max(rng.hi, pid)
        self.maps["pid_range"].update(key, rng)
        self.maps["pid_filter"].update(libbpf.new("uint32_t *", pid), libbpf.new("uint8_t *", 1))

    def remove_pid(self, pid: int) -> None:
        self.maps["pid_filter"].delete(libbpf.new("uint32_t *", pid))

    def exclude(self, pid: int) -> None:
        """Never trace process pid, its threads, or what it forks from now on, whatever the
        target: its threads are marked excluded in task-local storage, which dies with them."""
        value = libbpf.new("struct sw_task *", {"excluded": 1})
        key = libbpf.new("int *")
        fds = thread_pidfds(pid)
        try:
            for fd in fds:
                key[0] = fd
                self.maps["pending"].update(key, value)
        finally:
            for fd in fds:
                os.close(fd)
        if self.meta().mode == lib.SW_TARGET_PID:
            self.remove_pid(pid)

    @property
    def latency_measured(self) -> bool:
        """False for a tracer loaded with --no-latency: it has no sys_enter program, so
        total_ns and the histograms are not measured (reported as None, never as 0)."""
        return not int(self.meta().flags) & lib.SW_META_NO_LATENCY

    def _call_row(self, vals) -> dict[str, int | list[int] | None]:  # type: ignore[no-untyped-def]
        """One per-syscall (or io_uring op) row of per-CPU sw_stat values, summed."""
        row: dict[str, int | list[int] | None] = {
            f: vals.sum(f) for f in ("count", "errors", "bytes_in", "bytes_out")}
        if self.latency_measured:
            row["total_ns"] = vals.sum("total_ns")
            row["hist"] = [vals.sum("hist", b) for b in range(lib.SW_HIST_BUCKETS)]
        else:
            row["total_ns"] = row["hist"] = None
        return row

    def syscall_stats(self) -> dict[int, dict[str, int | list[int] | None]]:
        """Per syscall number: count, errors, bytes_in, bytes_out, total_ns, hist (summed over
        CPUs; total_ns and hist None when the latency is not measured)."""
        out: dict[int, dict[str, int | list[int] | None]] = {}
        key = libbpf.new("uint32_t *")
        for nr in syscalls.names():
            key[0] = nr
            vals = self.maps["stats"].lookup_per_cpu(key, "struct sw_stat")
            if vals is None or not vals.sum("count"):
                continue
            out[nr] = self._call_row(vals)
        return out

    def skip_in_flight_read(self, pid: int, fd: int, timeout: float = 10.0) -> None:
        """--no-latency, `swatch run`: CMD's process, held before exec in a read() of fd,
        began that call before the tracer was there, and sys_exit alone would count it (the
        default's sys_enter never saw it start, so it counts nothing). Once /proc says the
        process is blocked in that read, its thread is marked to skip its next sys_exit."""
        want = f"{syscalls.table()['read']} {fd:#x} "
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(f"/proc/{pid}/syscall") as f:
                    if f.read().startswith(want):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or os.waitid(
                    os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                raise SwatchError(f"process {pid} did not wait for its release as swatch run's "
                                  "held child should; nothing was traced")
            time.sleep(0.001)
        fds = thread_pidfds(pid)
        try:
            value = libbpf.new("struct sw_task *", {"skip_exit": 1})
            key = libbpf.new("int *", fds[0])
            self.maps["pending"].update(key, value)
        finally:
            for fd_ in fds:
                os.close(fd_)

    def processes(self) -> dict[int, ProcessCounts]:
        """Every process counted, by tgid, each once (trace/pidstats.py)."""
        return read_processes(self.maps["pid_slot"], self.maps["pid_stats"],
                              self.maps["pid_done"])

    def call_stats(self) -> dict[int | str, dict[str, int | list[int]]]:
        """syscall_stats() (keyed by number) and uring_stats() (by ``io_uring:<op>``): every
        row of a summary."""
        return {**self.syscall_stats(), **self.uring_stats()}

    def uring_stats(self) -> dict[str, dict[str, int | list[int]]]:
        """Per io_uring opcode, as ``io_uring:<name>``: the fields of syscall_stats()."""
        out: dict[str, dict[str, int | list[int]]] = {}
        key = libbpf.new("uint32_t *")
        for code, op in uring.OPS.items():
            key[0] = code
            vals = self.maps["uring_stats"].lookup_per_cpu(key, "struct sw_stat")
            if vals is None or not vals.sum("count"):
                continue
            out[op.row] = self._call_row(vals)
        return out

    def pid_stats(self) -> dict[int, dict[str, int | str | None]]:
        """Per process: comm, count, errors, bytes_in, bytes_out, total_ns (None when the
        latency is not measured), cgroup_id."""
        measured = self.latency_measured
        return {tgid: {"comm": pc.comm,
                       **{f: pc.values[f] for f in ("count", "errors", "bytes_in", "bytes_out")},
                       "total_ns": pc.values["total_ns"] if measured else None,
                       "cgroup_id": pc.cgroup_id}
                for tgid, pc in self.processes().items()}

class LoadedTracer(LoadedComponent, Session):
    """A tracer this process loaded: owns the object and (until pinned) the links."""

    COMPONENT = TRACER

    @classmethod
    def load(cls, target: Target, profile: str = "default", ring_size: int = DEFAULT_RING_SIZE,
             wakeup_bytes: int | None = None, enabled: frozenset[str] | None = None,
             failed_only: bool = False, latency: bool = True) -> LoadedTracer:
        """Load and attach. ``enabled`` (the syscalls that become events) defaults to the
        profile's; ``profile`` is then only the label `status` shows. ``failed_only``: emit
        syscall events only for calls that failed (strace -Z). ``latency`` False
        (--no-latency): sw_sys_enter is not loaded and sw_sys_exit counts alone, reading no
        clock; the latency is not measured and no events can be streamed."""
        require_root()
        require_btf()
        if enabled is None:
            enabled = syscalls.profile(profile)  # validates the name before touching the kernel
        if ring_size < 4096 or ring_size > MAX_RING_SIZE or ring_size & (ring_size - 1):
            raise SwatchError(f"ring buffer size {ring_size} must be a power of two from 4096 "
                              f"to {MAX_RING_SIZE} (1 GiB)")
        obj = BpfObject(bpf_object_path())
        held: list[PidFd] = []
        try:
            cfg = libbpf.new("struct sw_config *")
            cfg.mode = MODE_IDS[target.mode]
            cfg.follow_children = 1 if target.follow_children else 0
            cfg.target_uid = target.uid
            cfg.wakeup_bytes = wakeup_threshold(ring_size, wakeup_bytes)
            cfg.target_cgroup = target.cgroup_id
            cfg.target_cgroup_level = target.cgroup_level
            cfg.target_comm = target.comm.encode()[: lib.SW_TASK_COMM_LEN - 1]
            max_pids = max_pids_for(target)
            slots = pid_slots_for(target, max_pids)
            cfg.pid_slots = slots
            cfg.nr_cpus = libbpf.NUM_CPUS
            cfg.no_latency = 0 if latency else 1
            obj.set_rodata(cfg)
            obj.set_max_entries("events", ring_size)
            obj.set_max_entries("pid_filter", max_pids)
            obj.set_max_entries("pid_done", max_pids)
            for name in ("pid_stats", "pid_slot", "free_slots", "fd_classes"):
                obj.set_max_entries(name, max(slots, 1))  # 0 slots: the maps need an entry
            wanted = uring_programs()
            for prog_name in URING_PROGRAMS:
                obj.programs[prog_name].set_autoload(prog_name in wanted)
            obj.programs["sw_sys_enter"].set_autoload(latency)
            obj.load()
            tracer = cls(obj, {})
            if target.mode == "pid":
                held = [PidFd(p) for p in target.all_pids]
            tracer._fill(target, profile, enabled, ring_size, max_pids, failed_only, slots,
                         latency)
            for prog_name in PROGRAMS:
                if obj.programs[prog_name].autoload:
                    tracer.links[prog_name] = obj.programs[prog_name].attach()
            if target.mode == "pid" and target.follow_children:
                # Children forked before the fork hook was attached (never our own process).
                for root in target.all_pids:
                    add_existing(tracer, descendants(root, skip=os.getpid()), max_pids)
            gone = [h.pid for h in held if h.exited()]
            if gone:
                # It died while we loaded: its exit may have passed before its pid was
                # written, so nothing would ever remove it. Fail, leave nothing.
                for pid in gone:
                    tracer.remove_pid(pid)
                raise SwatchError(f"process {gone[0]} exited while the tracer was "
                                  "loading; nothing was loaded")
            return tracer
        except BaseException:
            obj.close()
            raise
        finally:
            for h in held:
                h.close()

    def _fill(self, target: Target, profile: str, enabled: frozenset[str], ring_size: int,
              max_pids: int, failed_only: bool = False, pid_slots: int = 0,
              latency: bool = True) -> None:
        self.max_pids = max_pids
        self.pid_slots = pid_slots
        info_map = self.maps["syscall_info"]
        key = libbpf.new("uint32_t *")
        info = libbpf.new("struct sw_syscall_info *")
        for nr, rule in syscalls.rules().items():
            if nr >= lib.SW_MAX_SYSCALLS:
                continue
            key[0] = nr
            (info.flags, info.fd_arg, info.path_arg, info.path2_arg, info.addr_arg,
             info.addrlen_arg, info.empty_path_fd_arg, info.detect) = rule.info(rule.name in enabled,
                                                                   failed_only)
            info_map.update(key, info)
        uinfo = libbpf.new("struct sw_uring_info *")
        for code, op in uring.OPS.items():
            key[0] = code
            uinfo.flags, uinfo.detect = uring.info(op, op.syscall in enabled, failed_only)
            self.maps["uring_info"].update(key, uinfo)
        empty = libbpf.new("struct sw_pid_range *", {"lo": 0xFFFFFFFF, "hi": 0})
        self.maps["pid_range"].update(libbpf.new("uint32_t *", 0), empty)
        meta = libbpf.new("struct sw_meta *")
        meta.version = VERSION
        meta.mode = MODE_IDS[target.mode]
        meta.target_pid = target.pid
        meta.target_uid = target.uid
        meta.follow_children = 1 if target.follow_children else 0
        meta.loader_pid = os.getpid()
        meta.load_time_ns = time.time_ns()
        meta.target_cgroup = target.cgroup_id
        meta.ring_size = ring_size
        meta.target_comm = target.comm.encode()[:15]
        meta.profile = profile.encode()[:31]
        meta.target_label = target.label.encode()[:63]
        meta.cgroup_path = target.cgroup_path.encode()[:255]
        meta.max_pids = max_pids
        meta.pid_slots = pid_slots
        meta.flags = 0 if latency else lib.SW_META_NO_LATENCY
        self.maps["meta"].update(libbpf.new("uint32_t *", 0), meta)
        # swatch's own processes are never traced, whatever the target (even `--pid 1`).
        for pid in (os.getpid(), *target.exclude_pids):
            self.exclude(pid)
        if target.mode == "pid":
            for pid in target.all_pids:
                self.add_pid(pid)

    def links_by_pin_name(self) -> dict[str, Link]:
        return {PROGRAMS[prog]: link for prog, link in self.links.items()}


class PinnedSession(PinnedComponent, Session):
    """The maps of a tracer loaded earlier by `swatch load`."""

    COMPONENT = TRACER


PROGRAM_SAMPLE_S = 1.0


def sample_programs(pin_dir: Path, session: Session,
                    seconds: float = PROGRAM_SAMPLE_S) -> dict[str, object]:
    """What each attached tracer program costs, from the kernel's own BPF statistics: BPF
    run-time statistics (bpf_enable_stats) are on only for this sample window, since they add
    two clock reads to every run of every BPF program on the machine. Programs run for every
    syscall on the machine (bystanders return early), so runs count more than the traced
    calls; `syscalls_counted` is what swatch counted in the same window."""
    links = [(prog, pin) for prog, pin in PROGRAMS.items()
             if (pin_dir / "links" / pin).exists()]
    fd = libbpf.enable_run_stats()
    try:
        before = {prog: libbpf.linked_prog_stats(pin_dir / "links" / pin) for prog, pin in links}
        counted0 = sum(int(s["count"]) for s in session.syscall_stats().values())
        t0 = time.monotonic()
        time.sleep(seconds)  # the sample window (not a barrier)
        counted1 = sum(int(s["count"]) for s in session.syscall_stats().values())
        after = {prog: libbpf.linked_prog_stats(pin_dir / "links" / pin) for prog, pin in links}
        window = time.monotonic() - t0
    finally:
        os.close(fd)
    progs = []
    for prog, pin in links:
        runs = after[prog].run_cnt - before[prog].run_cnt
        ns = after[prog].run_time_ns - before[prog].run_time_ns
        progs.append({"program": prog, "attached_to": pin, "prog_id": after[prog].prog_id,
                      "runs": runs, "run_time_ns": ns,
                      "ns_per_run": round(ns / runs, 1) if runs else None,
                      "runs_per_sec": round(runs / window, 1)})
    return {"window_s": round(window, 3), "stats_enabled": "only during this window",
            "syscalls_counted": counted1 - counted0, "programs": progs}


def program_lines(sample: dict) -> list[str]:  # type: ignore[type-arg]
    """`swatch status --programs`' lines for a sample_programs() result."""
    lines = [f"  programs   sampled {sample['window_s']:.1f} s with the kernel's BPF run-time "
             "statistics (on for that window only); runs are every syscall on the machine, "
             f"{sample['syscalls_counted']:,} of them counted by swatch"]
    for p in sample["programs"]:
        ns = f"{p['ns_per_run']:8.1f} ns/run" if p["ns_per_run"] is not None else "     - ns/run"
        lines.append(f"    {p['program']:<14} {p['attached_to']:<20} {ns} "
                     f"{p['runs_per_sec']:>12,.0f} runs/s")
    return lines


def pin_state(pin_dir: Path) -> PinState:
    """What pin_dir holds (component.py defines absent / loaded / stale / foreign)."""
    return TRACER.status(pin_dir)


def pin_status(pin_dir: Path) -> str:
    """'absent', 'loaded', 'stale' or 'foreign'."""
    return TRACER.status(pin_dir).state


def stale_message(pin_dir: Path, state: PinState) -> str:
    return TRACER.stale_message(pin_dir, state)


def unload(pin_dir: Path) -> list[str] | None:
    """Remove the tracer's pins; None if there were none, else what was left behind."""
    require_root()
    return TRACER.unload(pin_dir)


def load_pinned(target: Target, profile: str, pin_dir: Path, ring_size: int,
                replace: bool = False, enabled: frozenset[str] | None = None,
                failed_only: bool = False, latency: bool = True) -> Path:
    """`swatch load`: load, attach, pin, return; the kernel keeps tracing after we exit."""
    require_root()
    state = TRACER.require_free(
        pin_dir, replace=replace,
        already=f"swatch is already loaded (pins in {pin_dir}); `swatch unload` first, "
        "or pass --replace")
    tracer = LoadedTracer.load(target, profile, ring_size, enabled=enabled,
                               failed_only=failed_only, latency=latency)
    try:
        if state.state != "absent":
            left = TRACER.unload(pin_dir)
            if left:
                raise SwatchError(f"--replace: could not clear {', '.join(left)}")
        tracer.pin(pin_dir)
    finally:
        tracer.close()
    return pin_dir
