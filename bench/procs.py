"""Processes the harness starts, and the small text helpers every part uses.

Everything started goes through spawn(): it runs in its own session and is registered, so that
cleanup() can end it by its pid (never by name). The harness makes itself a child subreaper, so
orphans of a tracer come back to it and are reaped too.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BPF_FS_MAGIC = 0xCAFE4A11

_LIVE: dict[int, str] = {}  # pid -> description (each is a session leader we started)
CLEANUP_HOOKS: list[Callable[[], None]] = []  # run by cleanup(), last added first


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spawn(argv: Iterable[Any], *, stdout: Any = None, stderr: Any = None,
          env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = (),
          desc: str = "") -> subprocess.Popen:  # type: ignore[type-arg]
    """Start argv in its own session (so the tty's Ctrl-C goes to us, and we end the group)."""
    argv = [str(a) for a in argv]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env,
                         pass_fds=pass_fds, start_new_session=True, close_fds=True)
    _LIVE[p.pid] = desc or argv[0]
    return p


def forget(pid: int) -> None:
    """A process we started has been waited for."""
    _LIVE.pop(pid, None)


def live() -> list[str]:
    return list(_LIVE.values())


def sample_hwm(p: Any) -> None:
    """Record the peak RSS (VmHWM of its current mm) of a live child in p.hwm_kb.

    wait4()'s ru_maxrss is useless here: it includes the RSS that the forked child inherited
    from this Python process before exec, so every tracer would look ~20 MB."""
    try:
        with open(f"/proc/{p.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    v = int(line.split()[1])
                    if v > getattr(p, "hwm_kb", 0):
                        p.hwm_kb = v
                    return
    except (OSError, ValueError):
        pass


def poll_exit(p: Any) -> bool:
    """True (and p.returncode set) when p has exited; never blocks."""
    pid, status, _ru = os.wait4(p.pid, os.WNOHANG)
    if pid != p.pid:
        return False
    p.returncode = os.waitstatus_to_exitcode(status)
    forget(p.pid)
    return True


def reap(p: Any, timeout: float, watch: Iterable[Any] = ()) -> tuple[Any, Any, float]:
    """wait4() the child (polling, sampling peak RSS of p and of `watch`), returning
    (status, rusage, t_end) or (None, None, t) on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        for q in (p, *watch):
            if q is not None:
                sample_hwm(q)
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            t = time.monotonic()
            p.returncode = os.waitstatus_to_exitcode(status)
            forget(p.pid)
            return status, ru, t
        if time.monotonic() >= deadline:
            return None, None, time.monotonic()
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def kill_group(p: Any, first: int = signal.SIGINT, grace: float = 3.0) -> Any:
    """End a child we started (and its process group), politely first. Returns rusage or None."""
    if p.returncode is not None:
        return None
    for sig, wait in ((first, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            if sig == first:
                os.kill(p.pid, sig)
            else:
                os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        st, ru, _ = reap(p, wait)
        if st is not None:
            # kill whatever of its group may survive it (e.g. a traced workload)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return ru
    return None


def cleanup() -> None:
    """End every process we started (by pid), reap orphans, run the cleanup hooks."""
    for pid in list(_LIVE):
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            for _ in range(100):
                try:
                    r, _st = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    r = pid
                if r == pid:
                    break
                time.sleep(0.02)
            else:
                continue
            break
        forget(pid)
    reap_orphans()
    while CLEANUP_HOOKS:
        hook = CLEANUP_HOOKS.pop()
        try:
            hook()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: {e}")


def set_child_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER: orphans of our tracers come to us (reaped in cleanup), and we can
    tell whether a tracer reaped its workload (for CPU accounting)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reap_orphans() -> None:
    while True:
        try:
            pid, _st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def workload_reaped_by_tracer(pid: int) -> bool:
    """True unless the workload `pid` is our zombie (its tracer left it: we are a subreaper)."""
    try:
        wpid, _st, _ru = os.wait4(pid, os.WNOHANG)
        return not wpid
    except (ChildProcessError, ValueError):
        return True


# ------------------------------------------------------------------------------------ text
_RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_result(text: str) -> dict[str, Any] | None:
    """The workload's `RESULT key=value ...` line as a dict (numbers as numbers)."""
    m = _RESULT_RE.search(text)
    if not m:
        return None
    out: dict[str, Any] = {}
    for tok in m.group(1).split():
        k, _, v = tok.partition("=")
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def last_json_line(text: str, **match: Any) -> dict[str, Any] | None:
    """The last line of text that is a JSON object with every key=value of `match`."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and all(obj.get(k) == v for k, v in match.items()):
            return obj
    return None


def tail(text: str, n: int = 600) -> str:
    """The end of some output, its last line (an exception, usually) first."""
    text = text.strip()
    if not text:
        return ""
    last = text.splitlines()[-1].strip()
    rest = text[-n:]
    return rest if rest.startswith(last) or len(text) <= len(last) else f"{last} | ... {rest}"


def oneline(text: Any) -> str:
    return " | ".join(x.strip() for x in str(text).splitlines() if x.strip())


def rc_text(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    if rc is not None and rc > 128:
        try:
            return f"rc={rc} ({signal.Signals(rc - 128).name}?)"
        except ValueError:
            pass
    return f"rc={rc}"


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def count_lines(path: Path, containing: bytes | None = None) -> int:
    """Lines in a file (those containing `containing`, if given), read in 1 MiB blocks."""
    n = 0
    try:
        with open(path, "rb") as f:
            if containing is not None:
                return sum(1 for line in f if containing in line)
            while b := f.read(1 << 20):
                n += b.count(b"\n")
    except FileNotFoundError:
        return 0
    return n


def ru_cpu(ru: Any) -> float:
    return ru.ru_utime + ru.ru_stime if ru is not None else float("nan")


def med(xs: Iterable[Any]) -> Any:
    vals = [x for x in xs if x is not None and x == x]
    return statistics.median(vals) if vals else None


def which(name: str,
          extra: tuple[str, ...] = ("/usr/sbin", "/sbin", "/usr/local/sbin")) -> str | None:
    p = shutil.which(name)
    if p:
        return p
    for d in extra:
        c = Path(d) / name
        if c.exists() and os.access(c, os.X_OK):
            return str(c)
    return None


def is_bpffs(path: str) -> bool:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%t", path], capture_output=True, text=True)
        return int(out.stdout.strip() or "0", 16) == BPF_FS_MAGIC
    except (OSError, ValueError):
        return False


def bpf_prog_ids() -> dict[int, str] | None:
    """Loaded BPF programs (id -> name), from bpftool; None without bpftool."""
    bpftool = which("bpftool")
    if not bpftool:
        return None
    r = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True)
    try:
        return {p["id"]: p.get("name", "?") for p in json.loads(r.stdout or "[]")}
    except ValueError:
        return None
