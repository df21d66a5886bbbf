"""The one module that owns cffi and libbpf: objects, programs, links, maps, pins, ring buffer.

Everything above this layer calls plain Python. libbpf 1.x returns NULL and sets errno, or
returns a negative errno; either becomes a :class:`BpfError` that quotes libbpf's own message.

Over 400 lines on purpose: the style guide keeps every cffi call in this one module, so the
binding's size is libbpf's surface we use (objects, maps, links, ring buffer, formatter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syscall_watcher.kernel._libbpf import ffi, lib
from syscall_watcher.errors import BpfError, SwatchError

lib.sw_log_install(1 if os.environ.get("SWATCH_DEBUG_LIBBPF") else 0)

_BPF_ANY = 0
NUM_CPUS = lib.libbpf_num_possible_cpus()


def _log() -> str:
    msg = ffi.string(lib.sw_log_last()).decode(errors="replace").strip()
    return msg.splitlines()[-1] if msg else ""


def _check(what: str, ret: int) -> int:
    if ret < 0:
        raise BpfError(what, -ret, _log())
    return ret


def _check_ptr(what: str, ptr):  # type: ignore[no-untyped-def]
    if ptr == ffi.NULL:
        raise BpfError(what, ffi.errno or 1, _log())
    return ptr


def new(ctype: str, init=None):  # type: ignore[no-untyped-def]
    """A cffi struct/array, for callers that build map keys and values."""
    return ffi.new(ctype, init)


def sizeof(ctype: str) -> int:
    return ffi.sizeof(ctype)


def to_bytes(cdata, size: int | None = None) -> bytes:  # type: ignore[no-untyped-def]
    return bytes(ffi.buffer(cdata, size) if size is not None else ffi.buffer(cdata))


def to_str(cdata) -> str:  # type: ignore[no-untyped-def]
    """A char[] field (up to its first NUL) as text; bytes that are not UTF-8 replaced."""
    return to_bytes(cdata).split(b"\0", 1)[0].decode(errors="replace")


class MapMismatch(SwatchError):
    """A pinned map is not what this build expects (another version's pins)."""


# enum bpf_map_type values this project uses, for messages (linux/bpf.h)
MAP_TYPE_NAMES = {1: "hash", 2: "array", 5: "percpu_hash", 6: "percpu_array", 9: "lru_hash",
                  27: "ringbuf"}
_ARRAY_TYPES = (2, 6)


TRACEFS = "/sys/kernel/tracing"


def ensure_tracefs() -> None:
    """libbpf finds a tracepoint's id in tracefs: mount it where systemd would have, when a
    minimal machine or a container has not (as `perf` and `bpftrace` do). A failed mount is
    left for the attach to report."""
    if os.path.isdir(TRACEFS + "/events"):
        return
    subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], capture_output=True,
                   check=False)


@dataclass(frozen=True)
class MapSpec:
    """What a map is, as the kernel reports it: enough to tell one build's map from another's."""

    type: int
    key_size: int
    value_size: int
    max_entries: int

    def mismatch(self, expected: MapSpec) -> str:
        """'' if this map can be used as ``expected``; else what differs, in words.

        max_entries is compared for arrays only (they are indexed up to it), unless expected's
        is 0 (an array sized at load time); hash maps and the ring buffer are sized at load
        time by options."""
        diffs = []
        if self.type != expected.type:
            diffs.append(f"type {MAP_TYPE_NAMES.get(self.type, self.type)}, expected "
                         f"{MAP_TYPE_NAMES.get(expected.type, expected.type)}")
        if self.key_size != expected.key_size:
            diffs.append(f"key size {self.key_size}, expected {expected.key_size}")
        if self.value_size != expected.value_size:
            diffs.append(f"value size {self.value_size}, expected {expected.value_size}")
        if (not diffs and self.type in _ARRAY_TYPES and expected.max_entries
                and self.max_entries != expected.max_entries):
            diffs.append(f"max_entries {self.max_entries}, expected {expected.max_entries}")
        return "; ".join(diffs)


class MapFd:
    """A map by file descriptor: the way both loaded objects and pinned maps are used."""

    def __init__(self, name: str, fd: int, key_size: int, value_size: int, owned: bool) -> None:
        self.name = name
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self._owned = owned

    @classmethod
    def open_pinned(cls, path: str | Path, key_size: int, value_size: int) -> MapFd:
        fd = lib.bpf_obj_get(str(path).encode())
        if fd < 0:
            raise BpfError(f"open pinned map {path}", ffi.errno or -fd, _log())
        return cls(Path(path).name, fd, key_size, value_size, owned=True)

    def spec(self) -> MapSpec:
        """Type, key/value size and max_entries, from the kernel (bpf_obj_get_info_by_fd)."""
        info = ffi.new("struct bpf_map_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
        if lib.bpf_obj_get_info_by_fd(self.fd, info, size) < 0:
            raise BpfError(f"read info of map {self.name}", ffi.errno, _log())
        return MapSpec(info.type, info.key_size, info.value_size, info.max_entries)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def lookup(self, key, value) -> bool:  # type: ignore[no-untyped-def]
        """Fill ``value`` (cdata) from the entry at ``key`` (cdata); False if absent."""
        ret = lib.bpf_map_lookup_elem(self.fd, key, value)
        if ret < 0:
            err = ffi.errno
            if err == 2:  # ENOENT
                return False
            raise BpfError(f"lookup in map {self.name}", err, _log())
        return True

    def update(self, key, value, flags: int = _BPF_ANY) -> None:  # type: ignore[no-untyped-def]
        if lib.bpf_map_update_elem(self.fd, key, value, flags) < 0:
            raise BpfError(f"update map {self.name}", ffi.errno, _log())

    def delete(self, key) -> bool:  # type: ignore[no-untyped-def]
        if lib.bpf_map_delete_elem(self.fd, key) < 0:
            if ffi.errno == 2:
                return False
            raise BpfError(f"delete from map {self.name}", ffi.errno, _log())
        return True

    def keys(self, ctype: str) -> Iterator:  # type: ignore[type-arg]
        """Every key, as cdata of ``ctype`` (e.g. ``"uint32_t *"``)."""
        prev = ffi.NULL
        while True:
            nxt = ffi.new(ctype)
            if lib.bpf_map_get_next_key(self.fd, prev, nxt) < 0:
                return
            yield nxt
            prev = nxt

    def lookup_per_cpu(self, key, ctype: str) -> PerCpu | None:  # type: ignore[no-untyped-def]
        """The entry at ``key`` of a per-CPU map whose values are ``ctype`` (e.g.
        ``"struct sw_stat"``): one value per possible CPU; None if absent."""
        values = ffi.new(f"{ctype}[]", NUM_CPUS)
        return PerCpu(values) if self.lookup(key, values) else None


class PerCpu:
    """One entry of a per-CPU map: a value per possible CPU, summed field by field."""

    def __init__(self, values) -> None:  # type: ignore[no-untyped-def]
        self.values = values  # cdata array of NUM_CPUS values

    def sum(self, field: str, index: int | None = None) -> int:
        """``field`` (element ``index`` of an array field) summed over every CPU."""
        if index is None:
            return sum(getattr(self.values[c], field) for c in range(NUM_CPUS))
        return sum(getattr(self.values[c], field)[index] for c in range(NUM_CPUS))

    def max(self, field: str) -> int:
        return max(getattr(self.values[c], field) for c in range(NUM_CPUS))


class MapSet:
    """The named maps of one BPF object, loaded by this process or opened from pins.
    Subclasses say each map's C key and value types in MAP_TYPES."""

    MAP_TYPES: dict[str, tuple[str | None, str | None]] = {}

    def __init__(self, maps: dict[str, MapFd]) -> None:
        self.maps = maps

    @classmethod
    def open_pinned(cls, maps_dir: Path, specs: dict[str, MapSpec]):  # type: ignore[no-untyped-def]
        """Every map of MAP_TYPES from its pin under maps_dir; all of them or none. Each must
        match ``specs`` (what this build's object declares): a map pinned by another build is
        refused by name, before any lookup could write past a smaller value."""
        maps: dict[str, MapFd] = {}
        try:
            for name in cls.MAP_TYPES:
                m = maps[name] = MapFd.open_pinned(maps_dir / name, 0, 0)
                have = m.spec()
                diff = have.mismatch(specs[name])
                if diff:
                    raise MapMismatch(f"pinned map {maps_dir / name} does not match this "
                                      f"swatch: {diff}")
                m.key_size, m.value_size = have.key_size, have.value_size
        except SwatchError:
            for m in maps.values():
                m.close()
            raise
        return cls(maps)

    def _one(self, name: str):  # type: ignore[no-untyped-def]
        """(key, value) cdata of entry 0 of a one-entry array map."""
        key_t, val_t = self.MAP_TYPES[name]
        key = ffi.new(f"{key_t} *", 0)
        val = ffi.new(f"{val_t} *")
        if not self.maps[name].lookup(key, val):
            raise BpfError(f"read entry 0 of map {name}", 2)
        return key, val

    def _one_per_cpu(self, name: str) -> PerCpu:
        """Entry 0 of a one-entry per-CPU array map, on every CPU."""
        key_t, val_t = self.MAP_TYPES[name]
        values = self.maps[name].lookup_per_cpu(ffi.new(f"{key_t} *", 0), str(val_t))
        if values is None:
            raise BpfError(f"read entry 0 of map {name}", 2)
        return values

    def meta(self):  # type: ignore[no-untyped-def]
        return self._one("meta")[1]

    def close(self) -> None:
        for m in self.maps.values():
            m.close()


class Link:
    def __init__(self, ptr, name: str) -> None:  # type: ignore[no-untyped-def]
        self._ptr = ptr
        self.name = name

    @property
    def fd(self) -> int:
        return lib.bpf_link__fd(self._ptr)

    def pin(self, path: str | Path) -> None:
        _check(f"pin link {self.name} at {path}", lib.bpf_link__pin(self._ptr, str(path).encode()))

    def destroy(self) -> None:
        if self._ptr is not None:
            lib.bpf_link__destroy(self._ptr)
            self._ptr = None


class Program:
    def __init__(self, ptr) -> None:  # type: ignore[no-untyped-def]
        self._ptr = ptr
        self.name = ffi.string(lib.bpf_program__name(ptr)).decode()
        self.section = ffi.string(lib.bpf_program__section_name(ptr)).decode()

    def set_autoload(self, on: bool) -> None:
        _check(f"set autoload of {self.name}", lib.bpf_program__set_autoload(self._ptr, on))

    @property
    def autoload(self) -> bool:
        return bool(lib.bpf_program__autoload(self._ptr))

    @property
    def fd(self) -> int:
        return lib.bpf_program__fd(self._ptr)

    def attach(self) -> Link:
        if self.section.startswith(("tp/", "tracepoint/")):
            ensure_tracefs()
        lib.sw_log_clear()
        ptr = _check_ptr(f"attach {self.section} ({self.name})", lib.bpf_program__attach(self._ptr))
        return Link(ptr, self.name)

    def attach_cgroup(self, cgroup_fd: int) -> Link:
        lib.sw_log_clear()
        ptr = _check_ptr(
            f"attach {self.section} ({self.name}) to a cgroup",
            lib.bpf_program__attach_cgroup(self._ptr, cgroup_fd),
        )
        return Link(ptr, self.name)

    def attach_uprobe(self, binary_path: str, func_name: str, retprobe: bool = False,
                      cookie: int = 0) -> Link:
        """A uprobe (or uretprobe) on func_name of the ELF file binary_path, for every process
        that maps the file (now or later); ``cookie`` is bpf_get_attach_cookie()'s value."""
        lib.sw_log_clear()
        opts = ffi.new("struct bpf_uprobe_opts *")
        opts.sz = ffi.sizeof("struct bpf_uprobe_opts")
        opts.bpf_cookie = cookie
        opts.retprobe = retprobe
        name = ffi.new("char[]", func_name.encode())
        opts.func_name = name
        ptr = _check_ptr(
            f"attach {'uretprobe' if retprobe else 'uprobe'} {func_name} in {binary_path}",
            lib.bpf_program__attach_uprobe_opts(self._ptr, -1, binary_path.encode(), 0, opts))
        return Link(ptr, f"{self.name}:{func_name}")


class BpfObject:
    """An opened (then loaded) ``.bpf.o``. Close it to free the programs it did not pin."""

    def __init__(self, path: str | Path) -> None:
        if not Path(path).is_file():
            raise BpfError(f"open BPF object {path}", 2, "run `make` to build it")
        lib.sw_log_clear()
        self.path = str(path)
        self._ptr = _check_ptr(
            f"open BPF object {path}", lib.bpf_object__open_file(self.path.encode(), ffi.NULL)
        )
        self.programs: dict[str, Program] = {}
        prog = lib.bpf_object__next_program(self._ptr, ffi.NULL)
        while prog != ffi.NULL:
            p = Program(prog)
            self.programs[p.name] = p
            prog = lib.bpf_object__next_program(self._ptr, prog)
        self._maps: dict[str, object] = {}
        m = lib.bpf_object__next_map(self._ptr, ffi.NULL)
        while m != ffi.NULL:
            self._maps[ffi.string(lib.bpf_map__name(m)).decode()] = m
            m = lib.bpf_object__next_map(self._ptr, m)

    def map_names(self, internal: bool = False) -> list[str]:
        return [n for n, m in self._maps.items() if internal or not lib.bpf_map__is_internal(m)]

    def _map(self, name: str):  # type: ignore[no-untyped-def]
        try:
            return self._maps[name]
        except KeyError:
            raise BpfError(f"find map {name} in {self.path}", 2) from None

    def set_rodata(self, value) -> None:  # type: ignore[no-untyped-def]
        """Set the ``.rodata.cfg`` section: the program's ``const volatile`` config struct."""
        for name, m in self._maps.items():
            if name.endswith(".rodata.cfg"):
                size = ffi.sizeof(value[0])
                if lib.bpf_map__value_size(m) != size:
                    raise BpfError(
                        f".rodata of {self.path} is {lib.bpf_map__value_size(m)} bytes, "
                        f"config is {size}",
                        22,
                    )
                _check("set .rodata", lib.bpf_map__set_initial_value(m, value, size))
                return
        raise BpfError(f"find .rodata in {self.path}", 2)

    def reuse_map(self, name: str, fd: int) -> None:
        """Before load: map ``name`` is the existing map fd (another object's), not a new one."""
        _check(f"reuse map {name}", lib.bpf_map__reuse_fd(self._map(name), fd))

    def set_max_entries(self, name: str, n: int) -> None:
        _check(f"resize map {name}", lib.bpf_map__set_max_entries(self._map(name), n))

    def load(self) -> None:
        lib.sw_log_clear()
        _check(f"load {Path(self.path).name}", lib.bpf_object__load(self._ptr))

    def map_specs(self) -> dict[str, MapSpec]:
        """What each (non-internal) map of the object is, as declared (before any resize)."""
        return {
            name: MapSpec(lib.bpf_map__type(m), lib.bpf_map__key_size(m),
                          lib.bpf_map__value_size(m), lib.bpf_map__max_entries(m))
            for name, m in self._maps.items() if not lib.bpf_map__is_internal(m)
        }

    def map(self, name: str) -> MapFd:
        m = self._map(name)
        return MapFd(
            name,
            lib.bpf_map__fd(m),
            lib.bpf_map__key_size(m),
            lib.bpf_map__value_size(m),
            owned=False,
        )

    def pin_map(self, name: str, path: str | Path) -> None:
        _check(f"pin map {name} at {path}", lib.bpf_map__pin(self._map(name), str(path).encode()))

    def close(self) -> None:
        if self._ptr is not None:
            lib.bpf_object__close(self._ptr)
            self._ptr = None


BPF_FS_MAGIC = 0xCAFE4A11


def fs_magic(path: str | Path) -> int:
    """statfs(2) f_type of the filesystem holding path (follows symlinks); OSError if none."""
    buf = ffi.new("struct statfs *")
    if lib.statfs(str(path).encode(), buf) < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err), str(path))
    return int(buf.f_type) & 0xFFFFFFFF


def pinned_kind(path: str | Path) -> str | None:
    """'map', 'link' or 'prog' for a BPF object pinned at path; None if it is not one."""
    fd = lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        return None
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return {"anon_inode:bpf-map": "map", "anon_inode:bpf-link": "link",
            "anon_inode:bpf_link": "link",
            "anon_inode:bpf-prog": "prog"}.get(target)


def open_pinned_map(path: str | Path) -> MapFd:
    return MapFd.open_pinned(path, 0, 0)


@dataclass(frozen=True)
class ProgRunStats:
    """A loaded program's run statistics as the kernel keeps them (run_* grow only while
    BPF run-time statistics are enabled)."""

    prog_id: int
    name: str
    run_cnt: int
    run_time_ns: int


_BTF_KIND_TYPEDEF = 8
_tracepoints_seen: dict[str, bool] = {}


VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


def _vmlinux_btf_strings() -> bytes | None:
    """The string section of the running kernel's BTF (every type's name), or None when it
    cannot be read as one (no /sys/kernel/btf/vmlinux, another byte order, a short read)."""
    try:
        with open(VMLINUX_BTF, "rb", buffering=0) as f:
            head = f.read(24)  # struct btf_header
            if len(head) < 24 or int.from_bytes(head[:2], sys.byteorder) != 0xEB9F:
                return None
            hdr_len, _, _, str_off, str_len = (int.from_bytes(head[i:i + 4], sys.byteorder)
                                               for i in range(4, 24, 4))
            f.seek(hdr_len + str_off)
            buf = bytearray(str_len)
            view, got = memoryview(buf), 0
            while got < str_len:  # sysfs hands out a page per read
                n = f.readinto(view[got:])
                if not n:
                    return None
                got += n
            return bytes(buf)
    except OSError:
        return None


def _name_in_strings(strings: bytes, name: bytes) -> bool | None:
    """Is ``name`` one of the NUL-separated strings? None when only a string ending in it is
    there (a name stored as another's tail): then the caller must look at the types."""
    needle, at, tail = name + b"\0", strings.find(name + b"\0"), False
    while at >= 0:
        if at == 0 or strings[at - 1] == 0:
            return True
        tail = True
        at = strings.find(needle, at + 1)
    return None if tail else False


def kernel_has_tracepoints(*names: str) -> dict[str, bool]:
    """Which of the raw tracepoints ``names`` (tp_btf targets) the running kernel's BTF has:
    each is the typedef ``btf_trace_<name>``, and the kernel names nothing else so. Found by
    its name in the BTF's string section (~3 ms: only that section is read); only when that
    cannot tell is the kernel's BTF parsed (~15 ms and ~11 MB each time on a 6.x kernel, the
    cost libbpf's own load pays again). The answers are kept."""
    unknown = [n for n in names if n not in _tracepoints_seen]
    strings = _vmlinux_btf_strings() if unknown else None
    if strings is not None:
        for name in list(unknown):
            found = _name_in_strings(strings, f"btf_trace_{name}".encode())
            if found is not None:
                _tracepoints_seen[name] = found
                unknown.remove(name)
    if unknown:
        btf = lib.btf__load_vmlinux_btf()
        try:
            for name in unknown:
                _tracepoints_seen[name] = btf != ffi.NULL and lib.btf__find_by_name_kind(
                    btf, f"btf_trace_{name}".encode(), _BTF_KIND_TYPEDEF) > 0
        finally:
            if btf != ffi.NULL:
                lib.btf__free(btf)
    return {n: _tracepoints_seen[n] for n in names}


def kernel_has_tracepoint(name: str) -> bool:
    """Does the running kernel's BTF have the raw tracepoint ``name`` (a tp_btf target)?"""
    return kernel_has_tracepoints(name)[name]


def enable_run_stats() -> int:
    """bpf_enable_stats(BPF_STATS_RUN_TIME): the kernel counts every program's runs and run
    time while the returned fd is open (close it to stop). SwatchError if it cannot."""
    fd = lib.bpf_enable_stats(lib.BPF_STATS_RUN_TIME)
    if fd < 0:
        err = ffi.errno or -fd
        raise SwatchError(f"cannot enable BPF run-time statistics: {os.strerror(err)}")
    return fd


def linked_prog_stats(link_path: str | Path) -> ProgRunStats:
    """The run statistics of the program behind the BPF link pinned at link_path."""
    link_fd = _check(f"open pinned link {link_path}", lib.bpf_obj_get(str(link_path).encode()))
    try:
        linfo = ffi.new("struct bpf_link_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_link_info"))
        _check(f"read link {link_path}", lib.bpf_obj_get_info_by_fd(link_fd, linfo, size))
        prog_id = int(linfo.prog_id)
    finally:
        os.close(link_fd)
    prog_fd = _check(f"open program {prog_id}", lib.bpf_prog_get_fd_by_id(prog_id))
    try:
        pinfo = ffi.new("struct bpf_prog_info *")
        size = ffi.new("__u32 *", ffi.sizeof("struct bpf_prog_info"))
        _check(f"read program {prog_id}", lib.bpf_obj_get_info_by_fd(prog_fd, pinfo, size))
        return ProgRunStats(prog_id, ffi.string(pinfo.name).decode(errors="replace"),
                            int(pinfo.run_cnt), int(pinfo.run_time_ns))
    finally:
        os.close(prog_fd)


_new_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


class RingConsumer:
    """Drains a ring buffer in batches (C shim) and formats whole batches (C shim)."""

    # A batch and a chunk of text are both consumed whole before the next: larger buys nothing
    # but resident memory (it was 4 + 8 MiB, a sixth of a streaming run's peak RSS).
    BATCH_BYTES = 1 << 20
    OUT_BYTES = 1 << 20

    def __init__(self, ring: MapFd) -> None:
        batch = int(os.environ.get("SWATCH_BATCH_BYTES", self.BATCH_BYTES))
        self._c = _check_ptr("open ring buffer", lib.sw_consumer_new(ring.fd, batch))
        self._out = _new_uncleared("char[]", self.OUT_BYTES)  # pages touched only as used
        self._pos = ffi.new("size_t *")

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for a wakeup, then copy out a batch of what is queued, woken
        or not (no wait while a full batch left records behind); returns how many it holds."""
        self._pos[0] = 0
        return _check("poll ring buffer", lib.sw_consumer_poll(self._c, timeout_ms))

    def wait(self, timeout_ms: int) -> bool:
        """Wait up to timeout_ms for a wakeup, taking nothing (poll(0) or drain() takes it)."""
        return _check("wait on ring buffer", lib.sw_consumer_wait(self._c, timeout_ms)) > 0

    def drain(self) -> int:
        self._pos[0] = 0
        return _check("drain ring buffer", lib.sw_consumer_drain(self._c))

    @property
    def woken(self) -> bool:
        """Did the last poll() end on the kernel's wakeup, not on its timeout?"""
        return bool(lib.sw_consumer_woken(self._c))

    def delivered(self, ev_type: int) -> int:
        return lib.sw_consumer_delivered(self._c, ev_type)

    def batch(self) -> bytes:
        return bytes(ffi.buffer(lib.sw_consumer_data(self._c), lib.sw_consumer_len(self._c)))

    @property
    def position(self) -> int:
        """Where in the current batch formatting goes on."""
        return int(self._pos[0])

    @property
    def pending(self) -> bool:
        """Records of the current batch not formatted yet?"""
        return self._pos[0] + ffi.sizeof("struct sw_event_hdr") <= lib.sw_consumer_len(self._c)

    def next_ktime(self) -> int:
        """The kernel time of the next record to format (every record starts with the header)."""
        hdr = ffi.cast("struct sw_event_hdr *", lib.sw_consumer_data(self._c) + self._pos[0])
        return int(hdr.ktime_ns)

    def format(self, mode: int, color: bool, until_ns: int | None = None) -> Iterator[memoryview]:
        """The current batch as text, in chunks of whole lines (views valid until the next
        chunk), from where the last call stopped; with ``until_ns``, only up to the first
        record that happened after that ktime."""
        data = lib.sw_consumer_data(self._c)
        length = lib.sw_consumer_len(self._c)
        if until_ns is not None:
            length = lib.sw_batch_until(data, length, self._pos[0], until_ns)
        while self._pos[0] < length:
            n = lib.sw_format(data, length, self._pos, mode, color, self._out, self.OUT_BYTES)
            if n == 0:
                break
            yield memoryview(ffi.buffer(self._out, n))

    def release_held(self, max_age_ns: int, color: bool) -> memoryview:
        """EXEC lines held for start-up folding that are older than max_age_ns (0: all)."""
        n = lib.sw_fmt_release_held(time.monotonic_ns(), max_age_ns, color, self._out,
                                    self.OUT_BYTES)
        return memoryview(ffi.buffer(self._out, n))

    def close(self) -> None:
        if self._c is not None:
            lib.sw_consumer_free(self._c)
            self._c = None


def step_reset(on: bool) -> None:
    """--agent: forget every step; ``on``: tag step processes' records from now on."""
    lib.sw_step_reset(1 if on else 0)


def step_open(agent_pid: int, step: int) -> bool:
    """Open ``step`` for the agent process (0 closes its open step); False if no room."""
    return lib.sw_step_open(agent_pid, step) == 0


def step_of(pid: int) -> int:
    """The step a process belongs to (0: none)."""
    return int(lib.sw_step_of(pid))


def step_side() -> bytes:
    """The step processes' action records formatted since the last call (JSON lines)."""
    data = ffi.new("const char **")
    n = lib.sw_step_side(data)
    out = bytes(ffi.buffer(data[0], n)) if n else b""
    lib.sw_step_side_clear()
    return out


def step_lost() -> tuple[int, int]:
    """(action records not kept: side buffer full, processes not put in their step)."""
    return int(lib.sw_step_lost(0)), int(lib.sw_step_lost(1))


def count_lines(data: bytes | memoryview) -> int:
    """The newlines in ``data``, counted in C without a copy."""
    return int(lib.sw_count_lines(ffi.from_buffer(data), len(data))) if len(data) else 0


def set_format_tables(
    syscalls: dict[int, tuple[str, int, int]], errnames: dict[int, str],
    uring_ops: dict[int, tuple[str, int, int]] | None = None,
) -> None:
    """Tell the formatter each syscall's (name, verb, flags), each io_uring opcode's, and each
    errno's name."""
    lib.sw_fmt_reset()
    for nr, (name, verb, flags) in syscalls.items():
        lib.sw_fmt_set_syscall(nr, name.encode(), verb, flags)
    for op, (name, verb, flags) in (uring_ops or {}).items():
        lib.sw_fmt_set_uring_op(op, name.encode(), verb, flags)
    for err, name in errnames.items():
        lib.sw_fmt_set_errno(err, name.encode())


def set_format_options(ts_style: int = 0, show_duration: bool = False, failed_only: bool = False,
                       ancestry: bool = False, exec_view: bool = False, fold_startup: bool = False,
                       show_types: frozenset[int] | None = None, strsize: int = 0,
                       fold_ms: int = 100) -> None:
    """strace-style output options for the formatter (see struct sw_fmt_opts in _shim.h)."""
    opts = ffi.new("struct sw_fmt_opts *")
    opts.ts_style = ts_style
    opts.show_duration = show_duration
    opts.failed_only = failed_only
    opts.ancestry = ancestry
    opts.exec_view = exec_view
    opts.fold_startup = fold_startup
    types = show_types if show_types is not None else range(1, lib.SW_EV_TYPES)
    opts.show_types = sum(1 << t for t in types)
    opts.strsize = strsize
    opts.fold_ms = fold_ms
    lib.sw_fmt_set_options(opts)


def set_format_clock(realtime_minus_monotonic_ns: int, utc_offset_s: int) -> None:
    lib.sw_fmt_set_clock(realtime_minus_monotonic_ns, utc_offset_s)


def set_cgroup_label(cgroup_id: int, label: str) -> None:
    """Label a cgroup's records (JSON ``container``, ``[label]`` in human lines)."""
    err = lib.sw_fmt_set_cgroup_label(cgroup_id, label.encode())
    if err < 0:
        raise SwatchError(f"cannot label cgroup {cgroup_id} ({label}): {os.strerror(-err)}; "
                          f"{lib.sw_fmt_cgroup_labels()} cgroups labelled")


def set_cgroup_kubernetes(cgroup_id: int, namespace: str, pod: str, container: str) -> None:
    """Name the pod of a labelled cgroup's container (JSON ``kubernetes``, ``pod=`` in human
    lines); ``container`` may be empty."""
    err = lib.sw_fmt_set_cgroup_kubernetes(cgroup_id, namespace.encode(), pod.encode(),
                                           container.encode())
    if err < 0:
        raise SwatchError(f"cannot name the pod of cgroup {cgroup_id} ({namespace}/{pod}): "
                          f"{os.strerror(-err)}")


def cgroup_labels() -> int:
    """How many cgroups the formatter has a label for."""
    return int(lib.sw_fmt_cgroup_labels())


def set_denial_names(table: int, names: dict[int, str]) -> None:
    """The names a denial record is written with (lib.SW_NAMES_*: op, tier, action, ...)."""
    for ident, name in names.items():
        if lib.sw_fmt_set_name(table, ident, name.encode()) < 0:
            raise SwatchError(f"formatter name table {table}: cannot hold {ident}={name!r}")


def set_denial_policy(name: str, rule_paths: list[str]) -> None:
    """The loaded policy's name and path rules, for its denial records."""
    lib.sw_fmt_set_policy(name.encode())
    for i, path in enumerate(rule_paths):
        if lib.sw_fmt_set_policy_rule(i, os.fsencode(path)) < 0:
            raise SwatchError(f"policy rule {i} ({path!r}) does not fit the formatter")


def const(name: str) -> int:
    """A ``#define`` from watcher.h or _shim.h."""
    return getattr(lib, name)



def from_bytes(ctype: str, data: bytes):  # type: ignore[no-untyped-def]
    """A copy of ``data`` as a ``ctype *`` (e.g. a ring-buffer record as its struct)."""
    p = ffi.new(f"{ctype} *")
    size = min(len(data), ffi.sizeof(ctype))
    ffi.memmove(p, data, size)
    return p
