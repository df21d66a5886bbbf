"""The bypass cases of docs/policy.md's bypass table, as code a target process runs.

Each case is an attempt on a protected file (or, for `connect`, a denied address) that some
tier might miss. The expected outcome per tier is NOT written here: the host test
(tests/test_policy_bypass.py) and the VM test (tests/test_policy_vm_inner.py) read it from the
table in docs/policy.md and assert what the kernel really did, so the table cannot drift.

A case runs in a target as `attempt(id, fn)`: R[id] is 0 if the call succeeded, its errno if it
failed, -9 if a grandchild doing it was SIGKILLed. Outcome: the target itself SIGKILLed or
R[id] == -9 → "killed after"; EPERM → "blocked before"; 0 → "not covered".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "policy.md"
TIERS = ("lsm", "fmod_ret", "reactive")
OUTCOMES = ("blocked before", "killed after", "not covered", "killed after (racy)")


@dataclass(frozen=True)
class Case:
    id: str
    policy: str  # "files" or "connect" (see policy_text)
    act: str  # the body of `def act():`, run after the load; raises OSError when refused
    before: str = ""  # run before the load, at module level (names must carry the case id)
    setup: str = ""  # shell-free host-side preparation: "symlink SRC DST" lines


# {P}: protected (write unlink rename mkdir rmdir); {W}: protected for write only;
# {O}: unprotected; {D}: the base directory; {id}: the case id. Each case has its own files.
CASES: tuple[Case, ...] = (
    # ---- item 9: the write family through an fd opened before the load
    Case("fallocate_punch_hole", "files",
         "c(libc.fallocate, fd_{id}, 0x3, ctypes.c_long(0), ctypes.c_long(4))",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDWR)"),
    Case("fallocate_zero_range", "files",
         "c(libc.fallocate, fd_{id}, 0x10, ctypes.c_long(0), ctypes.c_long(4))",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDWR)"),
    Case("copy_file_range", "files", "os.copy_file_range(src_{id}, fd_{id}, 4)",
         "fd_{id} = os.open('{P}/f_{id}', os.O_WRONLY)\nsrc_{id} = os.open('{O}/x_{id}', 0)"),
    Case("sendfile", "files", "os.sendfile(fd_{id}, src_{id}, 0, 4)",
         "fd_{id} = os.open('{P}/f_{id}', os.O_WRONLY)\nsrc_{id} = os.open('{O}/x_{id}', 0)"),
    Case("splice", "files", "os.splice(pr_{id}, fd_{id}, 4)",
         "fd_{id} = os.open('{P}/f_{id}', os.O_WRONLY)\npr_{id}, pw_{id} = os.pipe()\n"
         "os.write(pw_{id}, b'pwnd')"),
    Case("mmap_shared_write", "files",
         "m = mmap.mmap(fd_{id}, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)\n"
         "m[0:1] = b'X'\nm.flush()",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDWR)"),
    Case("mprotect_shared_write", "files",
         "a = libc.mmap(None, 4096, 1, 1, fd_{id}, ctypes.c_long(0))\n"
         "if a in (None, ctypes.c_void_p(-1).value): raise OSError(ctypes.get_errno(), 'mmap')\n"
         "c(libc.mprotect, ctypes.c_void_p(a), 4096, 3)\nctypes.memmove(a, b'X', 1)",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDWR)"),
    Case("mmap_before_load", "files", "m_{id}[0:1] = b'X'\nm_{id}.flush()",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDWR)\n"
         "m_{id} = mmap.mmap(fd_{id}, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)"),
    Case("hardlink_out", "files", "os.link('{P}/f_{id}', '{O}/h_{id}')"),
    Case("hardlink_fd", "files",
         "c(libc.linkat, fd_{id}, b'', -100, b'{O}/h_{id}', 0x1000)",
         "fd_{id} = os.open('{P}/f_{id}', os.O_RDONLY)"),
    Case("rename_over", "files", "os.rename('{O}/x_{id}', '{W}/f_{id}')"),
    Case("rename_out_of_write_only", "files", "os.rename('{W}/f_{id}', '{O}/moved_{id}')"),
    Case("rename_into", "files", "os.rename('{O}/x_{id}', '{P}/x_{id}')"),
    Case("symlink_into", "files", "os.symlink('x', '{P}/sl_{id}')"),
    Case("mknod_into", "files", "os.mkfifo('{P}/fifo_{id}')"),
    Case("mkdir_sub", "files", "os.mkdir('{P}/sub/m_{id}')"),
    # ---- item 10: datagrams to an explicit Unix address
    Case("unix_dgram_sendto", "connect", "tx_{id}.sendto(b'x', '{D}/sock_{id}')",
         "rx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "rx_{id}.bind('{D}/sock_{id}')\n"
         "tx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)"),
    Case("unix_dgram_sendmsg", "connect", "tx_{id}.sendmsg([b'x'], [], 0, '{D}/sock_{id}')",
         "rx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "rx_{id}.bind('{D}/sock_{id}')\n"
         "tx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)"),
    Case("unix_dgram_sendmmsg", "connect", "sendmmsg_second_addressed(tx_{id}, rx_{id}, "
         "'{D}/sock_{id}')",
         "rx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "rx_{id}.bind('{D}/sock_{id}')\n"
         "peer_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "peer_{id}.bind('{D}/peer_{id}')\n"
         "tx_{id} = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
         "tx_{id}.connect('{D}/peer_{id}')"),
    Case("unix_stream_connect", "connect", "tx_{id}.connect('{D}/sock_{id}')",
         "rx_{id} = socket.socket(socket.AF_UNIX)\nrx_{id}.bind('{D}/sock_{id}')\n"
         "rx_{id}.listen()\ntx_{id} = socket.socket(socket.AF_UNIX)"),
    # ---- item 11 and the older cases: how the path is spelt
    Case("double_slash", "files", "os.unlink('/' + '{P}'.replace('/', '//') + '//f_{id}')"),
    Case("dot", "files", "os.unlink('{D}/top/./prot/./f_{id}')"),
    Case("dotdot", "files", "os.unlink('{O}/../top/prot/f_{id}')"),
    Case("relative_cwd", "files",
         "os.chdir('{P}')\ntry:\n    os.unlink('f_{id}')\nfinally:\n    os.chdir('/')"),
    Case("dirfd", "files", "os.unlink('f_{id}', dir_fd=dfd_{id})",
         "dfd_{id} = os.open('{P}', os.O_RDONLY | os.O_DIRECTORY)"),
    Case("dirfd_dotdot", "files", "os.unlink('../top/prot/f_{id}', dir_fd=dfd_{id})",
         "dfd_{id} = os.open('{O}', os.O_RDONLY | os.O_DIRECTORY)"),
    Case("dirfd_open_write", "files",
         "os.close(os.open('f_{id}', os.O_WRONLY | os.O_TRUNC, dir_fd=dfd_{id}))",
         "dfd_{id} = os.open('{P}', os.O_RDONLY | os.O_DIRECTORY)"),
    Case("long_path", "files", "os.unlink('{O}/' + './' * 130 + '../top/prot/f_{id}')"),
    Case("unfaulted_path", "files",
         "c(libc.unlink, ctypes.c_void_p(pm_{id}))",
         "with open('{D}/path_{id}', 'wb') as f:\n    f.write(b'{P}/f_{id}\\0')\n"
         "pf_{id} = os.open('{D}/path_{id}', os.O_RDONLY)\n"
         "pm_{id} = libc.mmap(None, 4096, 1, 2, pf_{id}, ctypes.c_long(0))  # never touched"),
    Case("proc_self_cwd", "files",
         "os.chdir('{P}')\ntry:\n    os.unlink('/proc/self/cwd/f_{id}')\nfinally:\n"
         "    os.chdir('/')"),
    Case("symlink_dir", "files", "os.unlink('{O}/dl_{id}/f_{id}')",
         setup="symlink {P} {O}/dl_{id}"),
    Case("symlink_truncate", "files", "os.close(os.open('{O}/sl_{id}', os.O_WRONLY | os.O_TRUNC))",
         setup="symlink {P}/f_{id} {O}/sl_{id}"),
    Case("symlink_open_write", "files",
         "fd = os.open('{O}/sl_{id}', os.O_WRONLY | os.O_APPEND)\nos.write(fd, b'x')",
         setup="symlink {P}/f_{id} {O}/sl_{id}"),
    Case("grandchild", "files", "in_grandchild(os.unlink, '{P}/f_{id}')"),
    Case("thread", "files", "in_thread(os.unlink, '{P}/f_{id}')"),
    Case("io_uring_open_write", "files",
         "rc = subprocess.run([UR, '{P}/f_{id}']).returncode\n"
         "if rc == 99: raise RuntimeError('io_uring unusable')\n"
         "if rc: raise OSError(rc, 'uring')"),
    # ---- item 12: a racing thread rewrites the argument during the call
    Case("race_path", "files",
         "race_unlink(b'{O}/race_{id}', b'{P}/f_{id}')"),
    Case("race_sockaddr", "connect", "race_connect('{D}/sock_{id}', port_{id})",
         "rx_{id} = socket.socket(socket.AF_UNIX)\nrx_{id}.bind('{D}/sock_{id}')\n"
         "rx_{id}.listen(4096)\nlsn_{id} = socket.socket()\n"
         "lsn_{id}.bind(('127.0.0.1', 0))\nlsn_{id}.listen(4096)\n"
         "port_{id} = lsn_{id}.getsockname()[1]"),
    # ---- renames of a directory above a protected path: last (they move the tree)
    Case("rename_ancestor", "files", "os.rename('{D}/top', '{D}/top2')"),
    Case("rename_ancestor_write_only", "files", "os.rename('{D}/wtop', '{D}/wtop2')"),
)
BY_ID = {c.id: c for c in CASES}

# Target-side code shared with tests/test_policy_vm_inner.py: fn(*a) in a fork of a fork
# (the grandchild of the traced process); what it returned: its errno (0: it succeeded), or
# 200 + the signal that killed it.
GRANDCHILD = r'''
def grandchild(fn, *a):
    pid = os.fork()
    if pid == 0:
        pid2 = os.fork()
        if pid2 == 0:
            try:
                fn(*a)
                v = 0
            except OSError as e:
                v = e.errno
            os._exit(v)
        _, st = os.waitpid(pid2, 0)
        os._exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 200 + os.WTERMSIG(st))
    _, st = os.waitpid(pid, 0)
    return os.WEXITSTATUS(st) if os.WIFEXITED(st) else 200
'''

PRELUDE = r'''
import ctypes, errno, json, mmap, os, socket, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
R = {}
def c(fn, *a):
    if fn(*a) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def attempt(name, fn):
    try:
        fn()
        R[name] = 0
    except OSError as e:
        R[name] = e.errno
def in_grandchild(fn, *a):
    v = grandchild(fn, *a)
    if v == 209:
        raise OSError(-9, "grandchild SIGKILLed")
    if v:
        raise OSError(v, os.strerror(v))
def in_thread(fn, *a):
    err = []
    def run():
        try:
            fn(*a)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
def sendmmsg_second_addressed(tx, rx, path):
    """sendmmsg() of two datagrams: the first to the connected peer, the second to `path`.
    Refused (EPERM) if the second never reached rx, whatever sendmmsg returned."""
    class IOV(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class MH(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_int),
                    ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                    ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]
    class MM(ctypes.Structure):
        _fields_ = [("hdr", MH), ("len", ctypes.c_uint)]
    data = ctypes.create_string_buffer(b"x")
    iov = IOV(ctypes.cast(data, ctypes.c_void_p), 1)
    addr = ctypes.create_string_buffer((1).to_bytes(2, "little") + path.encode() + b"\0")
    msgs = (MM * 2)()
    for m in msgs:
        m.hdr.iov = ctypes.cast(ctypes.pointer(iov), ctypes.c_void_p)
        m.hdr.iovlen = 1
    msgs[1].hdr.name = ctypes.cast(addr, ctypes.c_void_p)
    msgs[1].hdr.namelen = len(addr.raw)
    n = libc.sendmmsg(tx.fileno(), msgs, 2, 0)
    rx.setblocking(False)
    try:
        rx.recv(16)
    except BlockingIOError:
        raise OSError(errno.EPERM, f"sendmmsg sent {n}; the addressed datagram never arrived")
RACE_N = int(os.environ.get("RACE_N", "300"))
def race_unlink(allowed, protected):
    """unlink() a buffer another thread flips between an allowed and a protected path."""
    buf = ctypes.create_string_buffer(256)
    stop = []
    def flip():
        while not stop:
            ctypes.memmove(buf, allowed + b"\0", len(allowed) + 1)
            ctypes.memmove(buf, protected + b"\0", len(protected) + 1)
    t = threading.Thread(target=flip)
    t.start()
    denied = 0
    try:
        for _ in range(RACE_N):
            open(allowed, "wb").close()
            if libc.unlink(buf) == -1 and ctypes.get_errno() == errno.EPERM:
                denied += 1
            if not os.path.exists(protected):
                return  # the race won: the protected file is gone
    finally:
        stop.append(1)
        t.join()
    raise OSError(errno.EPERM if denied else errno.ENOENT, f"{denied} denied, none got through")
def race_connect(unix_path, port):
    """connect() to a sockaddr another thread flips between AF_INET and AF_UNIX."""
    class SA(ctypes.Structure):
        _fields_ = [("family", ctypes.c_ushort), ("data", ctypes.c_char * 108)]
    sa = SA()
    inet = ctypes.create_string_buffer(14)
    inet.raw = port.to_bytes(2, "big") + bytes([127, 0, 0, 1]) + bytes(8)
    path = unix_path.encode() + b"\0"
    ctypes.memmove(ctypes.addressof(sa) + 2, path, len(path))
    stop = []
    def flip():
        while not stop:
            sa.family = socket.AF_INET
            sa.family = socket.AF_UNIX
    t = threading.Thread(target=flip)
    t.start()
    denied = 0
    try:
        for _ in range(RACE_N):
            for fam in (socket.AF_UNIX, socket.AF_INET):
                s = socket.socket(fam)
                r = libc.connect(s.fileno(), ctypes.byref(sa), ctypes.sizeof(sa))
                e = ctypes.get_errno()
                s.close()
                if r == 0:
                    return  # a connect got through
                if e == errno.EPERM:
                    denied += 1
    finally:
        stop.append(1)
        t.join()
    raise OSError(errno.EPERM if denied else errno.ECONNREFUSED,
                  f"{denied} denied, none got through")
'''
PRELUDE += GRANDCHILD


def policy_text(kind: str, d: Path) -> str:
    if kind == "files":
        return f"protect {d}/top/prot write unlink rename mkdir rmdir\nprotect {d}/wtop/w write\n"
    return "block connect\n"


def make_tree(d: Path, cases: list[Case]) -> None:
    """The directories and one set of files per case, plus each case's symlinks."""
    for sub in ("top/prot/sub", "wtop/w", "out"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        for name in (f"top/prot/f_{case.id}", f"wtop/w/f_{case.id}"):
            (d / name).write_text("original\n")
        (d / f"out/x_{case.id}").write_text("movable\n")
        for line in fmt(case.setup, d, case.id).splitlines():
            verb, src, dst = line.split()
            assert verb == "symlink", line
            Path(dst).symlink_to(src)


def fmt(text: str, d: Path, case_id: str) -> str:
    return text.format(P=f"{d}/top/prot", W=f"{d}/wtop/w", O=f"{d}/out", D=str(d), id=case_id)


def target_program(cases: list[Case], d: Path, uring: str) -> str:
    """A program: PRELUDE, every case's `before`, "ready" on stdout, wait for a line on stdin,
    every attempt, then R as JSON on fd $REPORT_FD (or stdout)."""
    parts = [PRELUDE, f"UR = {uring!r}"]
    for case in cases:
        if case.before:
            parts.append(fmt(case.before, d, case.id))
    parts.append("print('ready', flush=True)  # set up: the policy may be loaded now\n"
                 "sys.stdin.readline()")
    for case in cases:
        body = fmt(case.act, d, case.id)
        parts.append(f"def act_{case.id}():\n" + "".join(f"    {ln}\n" for ln in
                                                          body.splitlines()))
        parts.append(f"attempt({case.id!r}, act_{case.id})")
    parts.append("out = json.dumps(R).encode()\n"
                 "fd = int(os.environ.get('REPORT_FD', '1'))\n"
                 "os.write(fd, out)\n")
    return "\n".join(parts)


def outcome(result: int | None, killed: bool) -> str:
    """What happened, in the table's words."""
    import errno

    if killed or result == -9:
        return "killed after"
    if result == errno.EPERM:
        return "blocked before"
    if result == 0:
        return "not covered"
    return f"unexpected result {result!r}"


_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|(.*)\|\s*$")


def table() -> dict[str, dict[str, str]]:
    """docs/policy.md's bypass table: case id → tier → outcome."""
    text = DOC.read_text()
    start = text.index("<!-- bypass-table -->")
    end = text.index("<!-- /bypass-table -->")
    rows: dict[str, dict[str, str]] = {}
    for line in text[start:end].splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]  # not "\|"
        # cells: attempt, lsm, fmod_ret, reactive
        assert len(cells) == 4, line
        outcomes = dict(zip(TIERS, (re.sub(r"\*", "", c) for c in cells[1:])))
        for tier, o in outcomes.items():
            assert o in OUTCOMES, f"{m.group(1)}/{tier}: {o!r} is not one of {OUTCOMES}"
        rows[m.group(1)] = outcomes
    return rows


def expected(case_id: str, tier: str) -> str:
    return table()[case_id][tier]


def environ_without_report() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "REPORT_FD"}
