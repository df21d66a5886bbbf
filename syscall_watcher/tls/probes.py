"""The TLS uprobes' kernel side (bpf/tls.bpf.c): load next to a tracer (sharing its
membership maps, so only its targets are recorded), attach to TLS libraries by file, find
the libraries traced processes map, and say which processes cannot be covered.

A uprobe is attached to a library *file* for every process (pid -1): it fires in whichever
process maps that file, now or later — so a library loaded after the target started (dlopen
of libssl by Python's ``_ssl``, a child that execs curl) is covered with no action as long
as it is one of the files already probed (the system's libssl and libgnutls are probed at
load). A *different* file (a venv's or an app's bundled libssl) is found by reading
/proc/PID/maps of the traced processes every SCAN_S while a consumer streams; its calls
before that scan are not seen. The kernel-side filter is the tracer's own test."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from syscall_watcher.data import built_object
from syscall_watcher.errors import BpfError, SwatchError
from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import BpfObject, Link, MapSet, RingConsumer, lib
from syscall_watcher.targets.target import Target

SCAN_S = 0.1      # how often the traced processes are looked at
RESCAN_S = 1.0    # how often one process that maps no TLS library is looked at again
DEFAULT_CAPTURE = 16384
MAX_CAPTURE = lib.SW_TLS_CHUNK * lib.SW_TLS_MAX_CHUNKS
_OPENSSL = re.compile(r"(^|/)libssl\.so(\.[0-9.]+)?$")
_GNUTLS = re.compile(r"(^|/)libgnutls\.so(\.[0-9.]+)?$")

R, EX, LONG, GNU = (lib.SW_TLS_CK_READ, lib.SW_TLS_CK_EX, lib.SW_TLS_CK_LONG,
                    lib.SW_TLS_CK_GNUTLS)
FUNCTIONS = {
    "openssl": [("SSL_write", 0), ("SSL_write_ex", EX), ("SSL_read", R), ("SSL_read_ex", R | EX)],
    "gnutls": [("gnutls_record_send", LONG | GNU), ("gnutls_record_recv", R | LONG | GNU)],
}
SOCKET_CALLS = ("write", "read", "sendto", "recvfrom", "sendmsg", "recvmsg", "writev", "readv")


def tls_object_path() -> Path:
    return built_object("tls.bpf.o", "SWATCH_TLS_BPF_OBJ")


def library_kind(path: str) -> str | None:
    """"openssl", "gnutls", or None for a path that is neither library."""
    if _OPENSSL.search(path):
        return "openssl"
    if _GNUTLS.search(path):
        return "gnutls"
    return None


def system_libraries() -> list[str]:
    """The system's libssl and libgnutls (the dynamic linker's cache), real paths."""
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                             check=False).stdout
    except OSError:
        out = ""
    found: dict[str, None] = {}
    for line in out.splitlines():
        name, _, path = line.partition("=>")
        name, path = name.strip().split(" ")[0], path.strip()
        if path and library_kind(name) and os.path.exists(path):
            found[os.path.realpath(path)] = None
    return list(found)


def mapped_libraries(pid: int) -> list[tuple[str, str]]:
    """(path as the process sees it, path we can open) of the TLS libraries pid maps."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip().decode(errors="replace")
                    if library_kind(path) and path not in out:
                        out[path] = f"/proc/{pid}/root{path}"
    except OSError:
        return []
    return list(out.items())


def tcp_sockets(pid: int) -> int:
    """How many TCP (v4/v6) sockets pid has open (0 if it is gone)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return 0
    if not inodes:
        return 0
    n = 0
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                n += sum(1 for line in f if line.split()[9] in inodes)
        except (OSError, IndexError):
            continue
    return n


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _why(err: BpfError) -> str:
    """A refusal's reason: the error, and libbpf's last word on it."""
    why = f"{os.strerror(err.errno)} (errno {err.errno})"
    said = err.libbpf_msg.removeprefix("libbpf: ")
    return f"{why} — libbpf: {said}" if said else why


@dataclass
class TlsSettings:
    """What --tls, --tls-bytes and --tls-lib asked for."""
    capture_bytes: int = DEFAULT_CAPTURE
    libraries: tuple[str, ...] = ()


@dataclass
class Library:
    path: str                 # as the process (or the system) names it
    kind: str                 # "openssl" / "gnutls"
    functions: list[str] = field(default_factory=list)   # attached
    missing: list[str] = field(default_factory=list)     # not in the file


class TlsCounters(MapSet):
    MAP_TYPES = {"tls_counters": ("uint32_t", "struct sw_tls_counters")}

    def read(self) -> dict[str, dict[str, int]]:
        vals = self._one_per_cpu("tls_counters")
        out = {}
        for op, name in ((lib.SW_TLS_WRITE, "write"), (lib.SW_TLS_READ, "read")):
            out[name] = {f: vals.sum(f, op) for f in ("calls", "emitted", "dropped",
                                                      "cut_bytes", "read_failed")}
        out["no_room"] = {"calls": vals.sum("no_room")}
        return out


class TlsProbes:
    """The loaded TLS object: its links, its ring, the libraries probed, and what is not
    covered. Close it to detach everything."""

    def __init__(self, obj: BpfObject, capture_bytes: int) -> None:
        self.obj = obj
        self.capture_bytes = capture_bytes
        self.links: list[Link] = []
        self.libraries: dict[tuple[int, int], Library] = {}
        self.refused: list[str] = []          # lines: library/function and the reason
        self.uncovered: dict[int, str] = {}   # pid -> comm: TCP sockets, no TLS library
        self.covered: set[int] = set()
        self.notes: list[str] = []            # lines to tell the user (taken by the consumer)
        self.fd_tracking = True
        self.counters = TlsCounters({"tls_counters": obj.map("tls_counters")})
        self._next_scan = 0.0
        self._next_look: dict[int, float] = {}  # pid -> when to read its maps again

    @classmethod
    def load(cls, session: MapSet, target: Target, capture_bytes: int = DEFAULT_CAPTURE,
             ring_size: int = 4 << 20, extra_libraries: tuple[str, ...] = ()) -> TlsProbes:
        """Load next to the tracer whose maps ``session`` holds (the same ``target``), attach
        to the system's TLS libraries and ``extra_libraries`` (which must be TLS libraries)."""
        if not 1 <= capture_bytes <= MAX_CAPTURE:
            raise SwatchError(f"--tls-bytes {capture_bytes}: must be from 1 to {MAX_CAPTURE}")
        for path in extra_libraries:
            if not os.path.isfile(path):
                raise SwatchError(f"--tls-lib {path}: no such file")
        obj = BpfObject(tls_object_path())
        try:
            cfg = libbpf.new("struct sw_tls_config *")
            t = cfg.target
            from syscall_watcher.trace.tracer import MODE_IDS
            t.mode = MODE_IDS[target.mode]
            t.follow_children = 1 if target.follow_children else 0
            t.target_uid = target.uid
            t.target_cgroup = target.cgroup_id
            t.target_cgroup_level = target.cgroup_level
            t.target_comm = target.comm.encode()[: lib.SW_TASK_COMM_LEN - 1]
            cfg.capture_bytes = capture_bytes
            obj.set_rodata(cfg)
            for name in ("pid_filter", "pid_range", "pending", "state"):
                obj.reuse_map(name, session.maps[name].fd)
            obj.set_max_entries("tls_events", ring_size)
            obj.load()
            probes = cls(obj, capture_bytes)
        except BaseException:
            obj.close()
            raise
        try:
            for call in SOCKET_CALLS:
                try:
                    probes.links.append(obj.programs[f"sw_tls_{call}"].attach())
                except BpfError as err:
                    probes.fd_tracking = False
                    probes.refused.append(f"syscalls:sys_enter_{call}: {err} (fds of TLS "
                                          "calls not found)")
            for path in extra_libraries:
                lib_ = probes.attach_library(path, path)
                refused = [r for r in probes.refused if r.startswith(f"{path}: ")]
                if lib_ is not None and not lib_.functions and refused:
                    raise SwatchError(f"--tls-lib {refused[0]}")
                if lib_ is None or not lib_.functions:
                    raise SwatchError(f"--tls-lib {path}: not a TLS library swatch knows "
                                      "(no SSL_write/SSL_read or gnutls_record_send/recv)")
            for path in system_libraries():
                probes.attach_library(path, path)
            return probes
        except BaseException:
            probes.close()  # its links, then the object
            raise

    def ring(self) -> RingConsumer:
        return RingConsumer(self.obj.map("tls_events"))

    def attach_library(self, path: str, open_path: str) -> Library | None:
        """Probe the library file (once per file); None if it is not one we know or gone."""
        try:
            st = os.stat(open_path)
        except OSError:
            return None
        key = (st.st_dev, st.st_ino)
        if key in self.libraries:
            return self.libraries[key]
        kind = library_kind(path) or self._kind_by_symbols(open_path)
        found = Library(path, kind or "unknown")
        self.libraries[key] = found
        for kind_, funcs in FUNCTIONS.items():
            if kind and kind_ != kind:
                continue
            for func, cookie in funcs:
                try:
                    enter = self.obj.programs["sw_tls_enter"].attach_uprobe(
                        open_path, func, retprobe=False, cookie=cookie)
                except BpfError as err:
                    if err.errno == 2:  # ENOENT: the file has no such symbol
                        found.missing.append(func)
                    else:  # in the file, but the kernel (or libbpf) would not probe it
                        self.refused.append(f"{path}: uprobe on {func} refused: {_why(err)}")
                    continue
                try:
                    exit_ = self.obj.programs["sw_tls_exit"].attach_uprobe(
                        open_path, func, retprobe=True, cookie=cookie)
                except BpfError as err:
                    enter.destroy()
                    self.refused.append(f"{path}: uretprobe on {func} refused: {_why(err)}")
                    continue
                self.links += [enter, exit_]
                found.functions.append(func)
        if found.functions and kind is None:
            found.kind = "gnutls" if found.functions[0].startswith("gnutls") else "openssl"
        return found

    def _kind_by_symbols(self, path: str) -> str | None:
        return None  # an unknown file: try every function (missing ones are ENOENT)

    def describe(self) -> list[str]:
        """What is probed, in words (one line per library), and what was refused."""
        out = []
        for lib_ in self.libraries.values():
            if lib_.functions:
                line = f"uprobes on {lib_.path} ({', '.join(lib_.functions)})"
                if lib_.missing:
                    line += f"; not in it: {', '.join(lib_.missing)}"
                out.append(line)
            else:
                out.append(f"{lib_.path}: none of the TLS functions swatch probes are in it")
        return out + self.refused

    def scan(self, pids: set[int], now: float | None = None, force: bool = False) -> None:
        """Every SCAN_S: the TLS libraries the traced processes map (new files get probes);
        a process with TCP sockets and no TLS library is noted once as not covered. A new
        process is looked at on the first scan that sees it, then every RESCAN_S until it
        maps a TLS library (a busy tree's hundreds of processes cost little)."""
        now = time.monotonic() if now is None else now
        if not force and now < self._next_scan:
            return
        self._next_scan = now + SCAN_S
        for gone in [p for p in self._next_look if p not in pids]:
            del self._next_look[gone]
        for pid in pids:
            if pid in self.covered or self._next_look.get(pid, 0.0) > now:
                continue
            self._next_look[pid] = now + RESCAN_S
            libs = mapped_libraries(pid)
            if libs:
                self.covered.add(pid)
                self.uncovered.pop(pid, None)
                for path, open_path in libs:
                    try:
                        st = os.stat(open_path)
                    except OSError:
                        continue
                    if (st.st_dev, st.st_ino) not in self.libraries:
                        found = self.attach_library(path, open_path)
                        if found is not None and found.functions:
                            self.notes.append(
                                f"pid {pid} ({comm_of(pid)}) maps {path}: uprobes attached "
                                f"({', '.join(found.functions)}); its calls before now are "
                                "not seen")
                continue
            if pid not in self.uncovered and tcp_sockets(pid):
                comm = comm_of(pid)
                self.uncovered[pid] = comm
                self.notes.append(
                    f"pid {pid} ({comm}) has TCP connections but maps no libssl/libgnutls: "
                    "its TLS plaintext is NOT seen (statically linked TLS: Go, Bun, rustls, "
                    "a bundled OpenSSL)")

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def close(self) -> None:
        for link in self.links:
            link.destroy()
        self.links = []
        self.obj.close()
