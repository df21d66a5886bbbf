"""io_uring operations: what the tracer knows about each opcode (bpf/watcher_uring.bpf.h).

Opcodes are the kernel's ABI (``enum io_uring_op`` in ``linux/io_uring.h``): numbers never
change, new ones are appended. For each: its name (``io_uring:<name>`` in summaries), the
syscall it does the work of (an op becomes an event when that syscall would: the profile and
``-e openat`` pick ``io_uring:openat`` too), the human line's verb, and how its result reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from syscall_watcher.kernel.libbpf import lib

PREFIX = "io_uring:"  # summary rows, JSON "syscall"


@dataclass(frozen=True)
class UringOp:
    name: str
    syscall: str         # the syscall whose selection (profile, -e) picks this op
    verb: str = "GENERIC"
    fd: bool = False     # the sqe's fd names a file (the kernel's needs_file)
    bytes_in: bool = False
    bytes_out: bool = False
    ret_fd: bool = False  # a result >= 0 is a new fd

    @property
    def row(self) -> str:
        return PREFIX + self.name


_RING = "io_uring_enter"  # ops with no syscall of their own: shown when io_uring_enter is

OPS: dict[int, UringOp] = {
    0: UringOp("nop", _RING),
    1: UringOp("readv", "readv", "READ", fd=True, bytes_in=True),
    2: UringOp("writev", "writev", "WRITE", fd=True, bytes_out=True),
    3: UringOp("fsync", "fsync", fd=True),
    4: UringOp("read_fixed", "pread64", "READ", fd=True, bytes_in=True),
    5: UringOp("write_fixed", "pwrite64", "WRITE", fd=True, bytes_out=True),
    6: UringOp("poll_add", "poll", fd=True),
    7: UringOp("poll_remove", _RING),
    8: UringOp("sync_file_range", "sync_file_range", fd=True),
    9: UringOp("sendmsg", "sendmsg", "WRITE", fd=True, bytes_out=True),
    10: UringOp("recvmsg", "recvmsg", "READ", fd=True, bytes_in=True),
    11: UringOp("timeout", _RING),
    12: UringOp("timeout_remove", _RING),
    13: UringOp("accept", "accept4", "ACCEPT", fd=True, ret_fd=True),
    14: UringOp("async_cancel", _RING),
    15: UringOp("link_timeout", _RING),
    16: UringOp("connect", "connect", "CONNECT", fd=True),
    17: UringOp("fallocate", "fallocate", fd=True),
    18: UringOp("openat", "openat", "OPEN", ret_fd=True),
    19: UringOp("close", "close", "CLOSE"),
    20: UringOp("files_update", _RING),
    21: UringOp("statx", "statx", "STAT"),
    22: UringOp("read", "read", "READ", fd=True, bytes_in=True),
    23: UringOp("write", "write", "WRITE", fd=True, bytes_out=True),
    24: UringOp("fadvise", "fadvise64", fd=True),
    25: UringOp("madvise", "madvise"),
    26: UringOp("send", "sendto", "WRITE", fd=True, bytes_out=True),
    27: UringOp("recv", "recvfrom", "READ", fd=True, bytes_in=True),
    28: UringOp("openat2", "openat2", "OPEN", ret_fd=True),
    29: UringOp("epoll_ctl", "epoll_ctl", fd=True),
    30: UringOp("splice", "splice", "WRITE", fd=True, bytes_out=True),
    31: UringOp("provide_buffers", _RING),
    32: UringOp("remove_buffers", _RING),
    33: UringOp("tee", "tee", fd=True),
    34: UringOp("shutdown", "shutdown", fd=True),
    35: UringOp("renameat", "renameat2", "RENAME"),
    36: UringOp("unlinkat", "unlinkat", "DELETE"),
    37: UringOp("mkdirat", "mkdirat", "MKDIR"),
    38: UringOp("symlinkat", "symlinkat", "LINK"),
    39: UringOp("linkat", "linkat", "LINK"),
    40: UringOp("msg_ring", _RING, fd=True),
    41: UringOp("fsetxattr", "fsetxattr", fd=True),
    42: UringOp("setxattr", "setxattr"),
    43: UringOp("fgetxattr", "fgetxattr", fd=True),
    44: UringOp("getxattr", "getxattr"),
    45: UringOp("socket", "socket", "SOCKET", ret_fd=True),
    46: UringOp("uring_cmd", "ioctl", fd=True),
    47: UringOp("send_zc", "sendto", "WRITE", fd=True, bytes_out=True),
    48: UringOp("sendmsg_zc", "sendmsg", "WRITE", fd=True, bytes_out=True),
    49: UringOp("read_multishot", "read", "READ", fd=True, bytes_in=True),
    50: UringOp("waitid", "waitid"),
    51: UringOp("futex_wait", "futex"),
    52: UringOp("futex_wake", "futex"),
    53: UringOp("futex_waitv", "futex_waitv"),
    54: UringOp("fixed_fd_install", _RING, fd=True),
    55: UringOp("ftruncate", "ftruncate", fd=True),
    56: UringOp("bind", "bind", "BIND", fd=True),
    57: UringOp("listen", "listen", "LISTEN", fd=True),
    58: UringOp("recv_zc", "recvfrom", "READ", fd=True, bytes_in=True),
    59: UringOp("epoll_wait", "epoll_wait", fd=True),
    60: UringOp("readv_fixed", "preadv", "READ", fd=True, bytes_in=True),
    61: UringOp("writev_fixed", "pwritev", "WRITE", fd=True, bytes_out=True),
    62: UringOp("pipe", "pipe2"),
}
assert max(OPS) < lib.SW_URING_OPS


@cache
def by_row() -> dict[str, int]:
    """``io_uring:<name>`` → opcode."""
    return {op.row: code for code, op in OPS.items()}


def info(op: UringOp, enabled: bool, failed_only: bool) -> tuple[int, int]:
    """The ``struct sw_uring_info`` fields (flags, detect) of one op."""
    flags = lib.SW_SC_ENABLED if enabled else 0
    flags |= lib.SW_SC_BYTES_IN if op.bytes_in else 0
    flags |= lib.SW_SC_BYTES_OUT if op.bytes_out else 0
    flags |= lib.SW_SC_FAILED_ONLY if failed_only else 0
    flags |= lib.SW_UR_FD if op.fd else 0
    return flags, lib.SW_DT_CONNECT if op.verb == "CONNECT" else 0


def format_table() -> dict[int, tuple[str, int, int]]:
    """Opcode → (NAME, verb, SW_FMT_* flags), for the C formatter's URING lines."""
    out = {}
    for code, op in OPS.items():
        flags = (lib.SW_FMT_BYTES if op.bytes_in or op.bytes_out else 0) | (
            lib.SW_FMT_RET_FD if op.ret_fd else 0)
        out[code] = (op.name.upper(), getattr(lib, f"SW_VERB_{op.verb}"), flags)
    return out
