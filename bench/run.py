#!/usr/bin/env python3
"""swatch benchmark suite: swatch vs strace, perf trace, bpftrace and libbpf-tools.

Usage (as root):
    .venv/bin/python bench/run.py            # full run (>=5 interleaved runs per setup)
    .venv/bin/python bench/run.py --quick    # smoke run, well under a minute

Every workload is a small C program (bench/workloads/) that times its OWN loop with
CLOCK_MONOTONIC and prints one `RESULT key=value ...` line, so tracer start-up never enters the
per-call figures. Untraced and traced runs execute the very same binary. Runs are interleaved:
each repetition goes round-robin over all setups of a workload (rotated per repetition), and the
figures reported are medians over repetitions. Ratios are taken only between setups of one run.

Outputs: a table on stdout, bench/results.json, bench/results.png (matplotlib, optional).
Stdlib only, apart from matplotlib for the chart.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = HERE / "workloads"
BUILD = ROOT / "build" / "bench"
DEFAULT_SWATCH = ROOT / ".venv" / "bin" / "swatch"
DEFAULT_PIN_DIR = "/sys/fs/bpf/swatch-bench"
BPF_FS_MAGIC = 0xCAFE4A11
NR_EXECVE_X86_64 = 59

# --------------------------------------------------------------------------------------------
# process bookkeeping: everything we start is registered, so that cleanup() can end it by pid.
# --------------------------------------------------------------------------------------------
_LIVE: dict[int, str] = {}          # pid -> description (each is a session leader we started)
_CLEANUP_HOOKS: list = []            # callables run by cleanup() (swatch unload, tmp removal)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def spawn(argv, *, stdout=None, stderr=None, env=None, pass_fds=(), desc=""):
    """Start argv in its own session (so the tty's Ctrl-C goes to us, and we end the group)."""
    p = subprocess.Popen(
        [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        env=env, pass_fds=pass_fds, start_new_session=True, close_fds=True,
    )
    _LIVE[p.pid] = desc or str(argv[0])
    return p


def sample_hwm(p) -> None:
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


def reap(p, timeout: float, watch=()):
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
            _LIVE.pop(p.pid, None)
            return status, ru, t
        if time.monotonic() >= deadline:
            return None, None, time.monotonic()
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def kill_group(p, first=signal.SIGINT, grace: float = 3.0):
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


def cleanup():
    for pid, desc in list(_LIVE.items()):
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
        _LIVE.pop(pid, None)
    reap_orphans()
    while _CLEANUP_HOOKS:
        hook = _CLEANUP_HOOKS.pop()
        try:
            hook()
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            log(f"cleanup: {e}")


def set_child_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans of our tracers come to us (reaped in cleanup), and we can
    tell whether a tracer reaped its workload (for CPU accounting)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reap_orphans():
    while True:
        try:
            pid, _st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _sigterm(_signo, _frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
_RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_result(text: str):
    m = _RESULT_RE.search(text)
    if not m:
        return None
    out = {}
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


def tail(text: str, n: int = 600) -> str:
    """The end of some output, its last line (an exception, usually) first."""
    text = text.strip()
    if not text:
        return ""
    last = text.splitlines()[-1].strip()
    rest = text[-n:]
    return rest if rest.startswith(last) or len(text) <= len(last) else f"{last} | ... {rest}"


def rc_text(rc) -> str:
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


def count_lines(path: Path) -> int:
    n = 0
    try:
        with open(path, "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += b.count(b"\n")
    except FileNotFoundError:
        return 0
    return n


def ru_cpu(ru) -> float:
    return ru.ru_utime + ru.ru_stime if ru is not None else float("nan")


def which(name: str, extra=("/usr/sbin", "/sbin", "/usr/local/sbin")):
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
    except Exception:  # noqa: BLE001
        return False


def bpf_prog_ids():
    bpftool = which("bpftool")
    if not bpftool:
        return None
    r = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True)
    try:
        return {p["id"]: p.get("name", "?") for p in json.loads(r.stdout or "[]")}
    except ValueError:
        return None


def med(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------
PROGS = ("read_storm", "getppid_storm", "forkexec_storm", "fileio")


def build_workloads(cc="gcc"):
    BUILD.mkdir(parents=True, exist_ok=True)
    hdr = SRC / "bench_common.h"
    for prog in PROGS:
        src, out = SRC / f"{prog}.c", BUILD / prog
        if out.exists() and out.stat().st_mtime >= max(src.stat().st_mtime, hdr.stat().st_mtime):
            continue
        cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(out), str(src)]
        log("build: " + " ".join(cmd))
        subprocess.run(cmd, check=True)


# --------------------------------------------------------------------------------------------
# peers: find them (`make bench-deps` installs them; this installs nothing), check they work
# --------------------------------------------------------------------------------------------
PEER_PACKAGES = {"strace": "strace", "perf": "linux-perf", "bpftrace": "bpftrace",
                 "syscount": "libbpf-tools", "stdbuf": "coreutils"}


def find_peers():
    found = {b: which(b) for b in PEER_PACKAGES}
    missing = sorted({PEER_PACKAGES[b] for b, p in found.items() if not p})
    notes = {}
    if missing:
        notes["missing"] = (f"not installed: {' '.join(missing)} "
                            "(sudo make bench-deps installs them)")
        log(f"peers: {notes['missing']}; their setups are reported as failed")
    # perf: Debian's /usr/bin/perf may be a wrapper that refuses an unknown kernel version;
    # then use a versioned binary (perf_6.1, ...) directly.
    perf_ok = None
    cands = [found["perf"]] if found["perf"] else []
    cands += sorted(str(p) for p in Path("/usr/bin").glob("perf_*") if os.access(p, os.X_OK))
    for c in cands:
        if not c:
            continue
        r = subprocess.run([c, "trace", "-o", "/dev/null", "--", "/bin/true"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            perf_ok = c
            break
        notes.setdefault("perf", "")
        notes["perf"] += f"{c}: rc={r.returncode} {tail(r.stderr, 300)}; "
    found["perf"] = perf_ok
    versions = {}
    for b, args in (("strace", ["-V"]), ("perf", ["--version"]), ("bpftrace", ["--version"])):
        if found.get(b):
            r = subprocess.run([found[b], *args], capture_output=True, text=True)
            versions[b] = (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"
    if found.get("syscount"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libbpf-tools"],
                           capture_output=True, text=True)
        versions["libbpf-tools"] = r.stdout.strip() or "?"
    return found, notes, versions


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------
class Workload:
    def __init__(self, name, prog, desc, fast, slow, quick_fast, quick_slow):
        self.name, self.prog, self.desc = name, prog, desc
        self._n = {(False, False): fast, (False, True): slow,
                   (True, False): quick_fast, (True, True): quick_slow}

    def argv(self, quick: bool, slow: bool, tmpdir: Path):
        n = self._n[(quick, slow)]
        if self.name == "fileio":
            m, k = n
            return [BUILD / self.prog, tmpdir, m, k]
        return [BUILD / self.prog, n]


WORKLOADS = [
    # name, prog, description, full fast / full slow / quick fast / quick slow sizes
    Workload("read", "read_storm", "1-byte read() from /dev/zero", 500_000, 50_000, 50_000, 5_000),
    Workload("getppid", "getppid_storm", "syscall(SYS_getppid)", 2_000_000, 100_000, 100_000, 5_000),
    Workload("forkexec", "forkexec_storm", "fork + execve /bin/true + waitpid", 1000, 300, 50, 20),
    Workload("fileio", "fileio", "openat + 4 KiB read + close over files in tmpfs",
             (1000, 20), (1000, 3), (200, 5), (200, 1)),
]


# --------------------------------------------------------------------------------------------
# setups (untraced, peers, swatch)
# --------------------------------------------------------------------------------------------
class Trial:
    """Per-trial scratch space."""

    def __init__(self, tmp: Path, wl: Workload | None):
        self.tmp = tmp
        self.wl = wl
        self.out = tmp / "tracer.stdout"
        self.err = tmp / "tracer.stderr"
        self.ready = tmp / "ready"


class Setup:
    name = "?"
    kind = "launch"          # none | launch | attach
    cls = "peer"             # baseline | peer | swatch
    does = ""                # what it does (stats / stream)
    slow = False
    needs: tuple = ()
    ready_text = None        # for attach setups: text in stdout that says "attached"

    def __init__(self, bins):
        self.bins = bins

    def unavailable(self):
        for b in self.needs:
            if not self.bins.get(b):
                return f"{b} not found/not working"
        return None

    def supports(self, wl: Workload):
        return True

    def launch_argv(self, cmd, t: Trial):
        raise NotImplementedError

    def attach_argv(self, pid: int, t: Trial):
        raise NotImplementedError

    def is_ready(self, t: Trial) -> bool:
        if self.ready_text is not None:
            return self.ready_text in read_text(t.out)
        return t.ready.exists()

    def post(self, t: Trial, res: dict, wl_pid: int) -> dict:
        return {}


class Untraced(Setup):
    name, kind, cls, does = "untraced", "none", "baseline", "-"


class StraceF(Setup):
    name, does, slow, needs = "strace -f", "stream (ptrace)", True, ("strace",)

    def launch_argv(self, cmd, t):
        return [self.bins["strace"], "-f", "-o", "/dev/null", *cmd]


class StraceFC(Setup):
    name, does, slow, needs = "strace -fc", "stats (ptrace)", True, ("strace",)

    def launch_argv(self, cmd, t):
        return [self.bins["strace"], "-fc", "-o", t.tmp / "strace-c.txt", *cmd]

    def post(self, t, res, wl_pid):
        m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?execve\s*$",
                      read_text(t.tmp / "strace-c.txt"), re.M)
        if m and t.wl and t.wl.name == "forkexec":
            return {"children_seen": int(m.group(1)) - 1}   # minus the workload's own execve
        return {}


class PerfTrace(Setup):
    name, does, slow, needs = "perf trace", "stream (perf buffer)", True, ("perf",)

    def launch_argv(self, cmd, t):
        return [self.bins["perf"], "trace", "-o", "/dev/null", "--", *cmd]


def _bt_filter(wl):
    if wl is not None and wl.name == "forkexec":
        return "pid == $1 || curtask->real_parent->tgid == $1"
    return "pid == $1"


class BpftraceCount(Setup):
    name, kind, does, needs = "bpftrace count", "attach", "stats (map)", ("bpftrace",)
    exit_probe = False

    def script(self, wl, t):
        s = f'BEGIN {{ system("touch {t.ready}"); }}\n'
        s += f"tracepoint:raw_syscalls:sys_enter /{_bt_filter(wl)}/ {{ @calls[args->id] = count(); }}\n"
        if self.exit_probe:
            s += f"tracepoint:raw_syscalls:sys_exit /{_bt_filter(wl)}/ {{ @rets[args->id] = count(); }}\n"
        if wl is not None and wl.name == "forkexec":
            s += ("tracepoint:sched:sched_process_exec /curtask->real_parent->tgid == $1/ "
                  "{ @execs = count(); }\n")
        return s

    def attach_argv(self, pid, t):
        return [self.bins["bpftrace"], "--unsafe", "-e", self.script(t.wl, t), str(pid)]

    def post(self, t, res, wl_pid):
        m = re.search(r"^@execs: (\d+)", read_text(t.out), re.M)
        return {"children_seen": int(m.group(1))} if m else {}


class BpftraceCountEnterExit(BpftraceCount):
    name = "bpftrace count (enter+exit)"
    exit_probe = True


class BpftracePrintf(Setup):
    name, kind, does, slow, needs = "bpftrace printf", "attach", "stream (perf buffer)", True, ("bpftrace",)

    def attach_argv(self, pid, t):
        s = (f'BEGIN {{ system("touch {t.ready}"); }}\n'
             f'tracepoint:raw_syscalls:sys_enter /{_bt_filter(t.wl)}/ '
             f'{{ printf("%d %d\\n", pid, args->id); }}\n')
        return [self.bins["bpftrace"], "--unsafe", "-o", t.tmp / "bt.txt", "-e", s, str(pid)]

    def post(self, t, res, wl_pid):
        text = read_text(t.tmp / "bt.txt")
        lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", text + read_text(t.out)
                                              + read_text(t.err)))
        ev = 0
        kids = 0
        for line in text.splitlines():
            a = line.split()
            if len(a) == 2 and a[0].isdigit() and a[1].isdigit():
                ev += 1
                if int(a[1]) == NR_EXECVE_X86_64 and int(a[0]) != wl_pid:
                    kids += 1
        out = {"delivered": ev, "dropped": lost}
        if t.wl and t.wl.name == "forkexec":
            out["children_seen"] = kids
        return out


class Syscount(Setup):
    name, kind, does, needs = "syscount -p", "attach", "stats (map, enter+exit)", ("syscount", "stdbuf")
    ready_text = "Tracing syscalls"

    def attach_argv(self, pid, t):
        # stdbuf: syscount printf()s its "Tracing ..." line after attaching; make it line-buffered
        return [self.bins["stdbuf"], "-oL", self.bins["syscount"], "-p", str(pid)]

    def post(self, t, res, wl_pid):
        if t.wl and t.wl.name == "forkexec":
            return {"note": "-p traces the parent only; children not counted"}
        return {}


class SwatchStats(Setup):
    name, cls, does, needs = "swatch stats", "swatch", "stats (in-kernel counts)", ("swatch",)

    def launch_argv(self, cmd, t):
        return [self.bins["swatch"], "run", "--stats-only", "--", *cmd]

    def post(self, t, res, wl_pid):
        err = read_text(t.err)
        out = {"summary_tail": tail(err, 400)}
        if t.wl and t.wl.name == "forkexec":
            # "swatch: CMD exited with code 0 after 0.15s; 101 process(es), ..."
            m = re.search(r"(\d[\d,]*) process\(es\)", err)
            if m:
                out["children_seen"] = int(m.group(1).replace(",", "")) - 1
            m = re.search(r"\bexecve ([\d,]+)", err)
            if m:
                out["execve_in_summary"] = int(m.group(1).replace(",", ""))
        return out


# contract: "swatch: events delivered=N dropped=M"; anything after it (e.g. "emitted=K") is allowed
_DELIVERED_RE = re.compile(r"^swatch: events delivered=(\d+) dropped=(\d+)(?: emitted=(\d+))?", re.M)


class SwatchStream(Setup):
    name, cls, does, needs = "swatch json", "swatch", "stream (ring buffer -> JSON lines)", ("swatch",)

    def launch_argv(self, cmd, t):
        return [self.bins["swatch"], "run", "--json", "-o", t.tmp / "events.jsonl",
                "--filter", "all", "--", *cmd]

    def post(self, t, res, wl_pid):
        err = read_text(t.err)
        m = _DELIVERED_RE.search(err)
        out = {"jsonl_lines": count_lines(t.tmp / "events.jsonl")}
        if m:
            out["delivered"], out["dropped"] = int(m.group(1)), int(m.group(2))
            if m.group(3) is not None:
                out["emitted"] = int(m.group(3))
                out["emitted_eq_delivered_plus_dropped"] = out["emitted"] == out["delivered"] + out["dropped"]
        else:
            out["error"] = f"no 'swatch: events delivered=N dropped=M' line on stderr: {tail(err, 300)}"
        if t.wl and t.wl.name == "forkexec":
            kids = 0
            try:
                with open(t.tmp / "events.jsonl", "rb") as f:
                    for line in f:
                        if b'"exec"' not in line:
                            continue
                        try:
                            ev = json.loads(line)
                        except ValueError:
                            continue
                        if ev.get("type") == "exec" and ev.get("pid") != wl_pid:
                            kids += 1
            except FileNotFoundError:
                pass
            out["children_seen"] = kids
        return out


SYSCALL_SETUPS = [Untraced, StraceF, StraceFC, PerfTrace, BpftraceCount, BpftracePrintf,
                  Syscount, SwatchStats, SwatchStream]


# --------------------------------------------------------------------------------------------
# running one trial
# --------------------------------------------------------------------------------------------
class Runner:
    def __init__(self, args, bins):
        self.args = args
        self.bins = bins
        self.quick = args.quick
        self.timeout = 90.0 if args.quick else 600.0
        self.ready_timeout = 30.0
        self.base = Path(tempfile.mkdtemp(prefix="swatch-bench-", dir=args.tmp))
        _CLEANUP_HOOKS.append(lambda: shutil.rmtree(self.base, ignore_errors=True))
        self.seq = 0

    def new_trial(self, wl):
        self.seq += 1
        d = self.base / f"t{self.seq}"
        d.mkdir()
        (d / "data").mkdir()
        return Trial(d, wl)

    def env(self):
        e = dict(os.environ)
        e.pop("BENCH_GATE_FD", None)
        e["SWATCH_PIN_DIR"] = self.args.pin_dir
        return e

    def run(self, setup: Setup, wl: Workload, argv=None, n_override=None):
        t = self.new_trial(wl)
        try:
            return self._run(setup, wl, t, argv)
        finally:
            if not self.args.keep_tmp:
                shutil.rmtree(t.tmp, ignore_errors=True)

    def _finish_wl(self, wl_out: Path, wl_err: Path | None, status_ok: bool, rc):
        text = read_text(wl_out)
        res = parse_result(text)
        if res is None:
            err = read_text(wl_err) if wl_err else ""
            return None, f"no RESULT line ({rc_text(rc)}); stderr: {tail(err, 400)!r} stdout: {tail(text, 200)!r}"
        return res, None

    def _run(self, setup, wl, t: Trial, argv):
        cmd = argv or wl.argv(self.quick, setup.slow, t.tmp / "data")
        cmd = [str(c) for c in cmd]
        rec = {"setup": setup.name, "cmd": " ".join(cmd)}
        if setup.kind in ("none", "launch"):
            full = cmd if setup.kind == "none" else [str(a) for a in setup.launch_argv(cmd, t)]
            rec["argv"] = full
            with open(t.out, "wb") as fo, open(t.err, "wb") as fe:
                t0 = time.monotonic()
                p = spawn(full, stdout=fo, stderr=fe, env=self.env(), desc=setup.name)
                st, ru, t1 = reap(p, self.timeout)
            if st is None:
                kill_group(p, signal.SIGKILL)
                rec["error"] = f"timeout after {self.timeout:.0f}s"
                return rec
            rec["wall_s"] = t1 - t0
            rec["rc"] = p.returncode
            res, err = self._finish_wl(t.out, t.err, True, p.returncode)
            if err:
                rec["error"] = f"{setup.name}: {err}"
                return rec
            rec["result"] = res
            if setup.kind == "launch":
                # wait4 on the tracer counts the workload too if (and only if) the tracer reaped it.
                # We are a child subreaper: a workload the tracer left unreaped is now our zombie.
                wl_cpu = (res.get("cpu_self_ns", 0) + res.get("cpu_children_ns", 0)) / 1e9
                reaped_by_tracer = True
                try:
                    wpid, _wst, _wru = os.wait4(int(res.get("pid", -1)), os.WNOHANG)
                    if wpid:
                        reaped_by_tracer = False
                except (ChildProcessError, ValueError):
                    pass
                rec["tracer_cpu_s"] = max(0.0, ru_cpu(ru) - wl_cpu) if reaped_by_tracer else ru_cpu(ru)
                rec["tracer_maxrss_kb"] = getattr(p, "hwm_kb", None)
            if p.returncode != 0:
                rec["error"] = f"{setup.name} {rc_text(p.returncode)}; stderr: {tail(read_text(t.err))}"
            extra = setup.post(t, res, res.get("pid", -1))
            if "error" in extra and "error" in rec:
                extra["error"] = rec["error"] + "; " + extra["error"]
            rec.update(extra)
            return rec

        # attach: start the workload held at its gate, attach the tracer to its pid, then release
        r, w = os.pipe()
        env = self.env()
        env["BENCH_GATE_FD"] = str(r)
        wl_out, wl_err = t.tmp / "wl.stdout", t.tmp / "wl.stderr"
        tracer = None
        with open(wl_out, "wb") as wo, open(wl_err, "wb") as we:
            wp = spawn(cmd, stdout=wo, stderr=we, env=env, pass_fds=(r,), desc=f"workload {wl.name}")
        os.close(r)
        try:
            targv = [str(a) for a in setup.attach_argv(wp.pid, t)]
            rec["argv"] = targv
            with open(t.out, "wb") as fo, open(t.err, "wb") as fe:
                t0 = time.monotonic()
                tracer = spawn(targv, stdout=fo, stderr=fe, env=self.env(), desc=setup.name)
            deadline = time.monotonic() + self.ready_timeout
            while not setup.is_ready(t):
                sample_hwm(tracer)
                pid, _st, _ru = os.wait4(tracer.pid, os.WNOHANG)
                if pid == tracer.pid:
                    _LIVE.pop(tracer.pid, None)
                    tracer.returncode = os.waitstatus_to_exitcode(_st)
                    rec["error"] = (f"{setup.name} exited (rc={tracer.returncode}) before attaching: "
                                    f"{tail(read_text(t.err) + read_text(t.out))}")
                    return rec
                if time.monotonic() > deadline:
                    rec["error"] = f"{setup.name} not ready after {self.ready_timeout:.0f}s: {tail(read_text(t.err))}"
                    return rec
                time.sleep(0.01)
            rec["attach_s"] = time.monotonic() - t0
            os.write(w, b"g")
            os.close(w)
            w = -1
            st, _ru, _t = reap(wp, self.timeout, watch=(tracer,))
            if st is None:
                rec["error"] = f"workload timeout after {self.timeout:.0f}s"
                return rec
            ru = kill_group(tracer, signal.SIGINT, grace=30.0)
            rec["wall_s"] = time.monotonic() - t0
            res, err = self._finish_wl(wl_out, wl_err, True, wp.returncode)
            if err:
                rec["error"] = err
                return rec
            rec["result"] = res
            rec["tracer_cpu_s"] = ru_cpu(ru)
            rec["tracer_maxrss_kb"] = getattr(tracer, "hwm_kb", None)
            if wp.returncode != 0:
                rec["error"] = f"workload exit code {wp.returncode}: {tail(read_text(wl_err))}"
            rec.update(setup.post(t, res, wp.pid))
            return rec
        finally:
            if w >= 0:
                os.close(w)
            for p in (wp, tracer):
                if p is not None and p.returncode is None:
                    kill_group(p, signal.SIGKILL, grace=2.0)


# --------------------------------------------------------------------------------------------
# bystander: a getppid loop nobody traces, while a tracer watches another (sleeping) pid
# --------------------------------------------------------------------------------------------
class BystanderTracer:
    def __init__(self, name, runner: Runner, bins):
        self.name, self.r, self.bins = name, runner, bins
        self.proc = None

    def unavailable(self):
        return None

    def start(self, target_pid, tmp: Path):
        """Start tracing target_pid; return None when attached, else an error string."""
        return None

    def stop(self):
        """Stop tracing; return (cpu_s, maxrss_kb)."""
        return None, None

    def _attached_proc(self, argv, tmp: Path, ready):
        out, err = tmp / "tracer.stdout", tmp / "tracer.stderr"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            self.proc = spawn(argv, stdout=fo, stderr=fe, env=self.r.env(), desc=self.name)
        deadline = time.monotonic() + self.r.ready_timeout
        while not ready(out):
            sample_hwm(self.proc)
            pid, st, _ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == self.proc.pid:
                _LIVE.pop(self.proc.pid, None)
                self.proc.returncode = os.waitstatus_to_exitcode(st)
                return f"exited rc={self.proc.returncode}: {tail(read_text(err) + read_text(out))}"
            if time.monotonic() > deadline:
                return f"not ready after {self.r.ready_timeout:.0f}s: {tail(read_text(err))}"
            time.sleep(0.01)
        return None

    def _stop_proc(self):
        if self.proc is None:
            return None, None
        p, self.proc = self.proc, None
        ru = kill_group(p, signal.SIGINT, grace=15.0)
        return (ru_cpu(ru) if ru else None), getattr(p, "hwm_kb", None)


class BNone(BystanderTracer):
    pass


class BSyscount(BystanderTracer):
    def unavailable(self):
        return None if self.bins.get("syscount") and self.bins.get("stdbuf") else "syscount not found"

    def start(self, target_pid, tmp):
        return self._attached_proc([self.bins["stdbuf"], "-oL", self.bins["syscount"], "-p", target_pid],
                                   tmp, lambda out: "Tracing syscalls" in read_text(out))

    def stop(self):
        return self._stop_proc()


class BBpftrace(BystanderTracer):
    def __init__(self, name, runner, bins, exit_probe):
        super().__init__(name, runner, bins)
        self.exit_probe = exit_probe

    def unavailable(self):
        return None if self.bins.get("bpftrace") else "bpftrace not found"

    def start(self, target_pid, tmp):
        ready = tmp / "ready"
        s = f'BEGIN {{ system("touch {ready}"); }}\n'
        s += "tracepoint:raw_syscalls:sys_enter /pid == $1/ { @calls[args->id] = count(); }\n"
        if self.exit_probe:
            s += "tracepoint:raw_syscalls:sys_exit /pid == $1/ { @rets[args->id] = count(); }\n"
        return self._attached_proc([self.bins["bpftrace"], "--unsafe", "-e", s, target_pid], tmp,
                                   lambda _out: ready.exists())

    def stop(self):
        return self._stop_proc()


class BSwatch(BystanderTracer):
    def __init__(self, name, runner, bins, filter_all):
        super().__init__(name, runner, bins)
        self.filter_all = filter_all
        self.loaded = False
        self.load_ru = None

    def unavailable(self):
        return None if self.bins.get("swatch") else f"swatch CLI not found at {self.r.args.swatch}"

    def _swatch(self, *a, timeout=120):
        argv = [self.bins["swatch"], *a, "--pin-dir", self.r.args.pin_dir]
        with tempfile.TemporaryFile() as fo:
            p = spawn(argv, stdout=fo, stderr=subprocess.STDOUT, env=self.r.env(), desc="swatch " + a[0])
            st, ru, _ = reap(p, timeout)
            if st is None:
                kill_group(p, signal.SIGKILL)
            fo.seek(0)
            self.hwm_kb = max(getattr(self, "hwm_kb", 0), getattr(p, "hwm_kb", 0))
            return p.returncode, ru, fo.read().decode(errors="replace")

    def start(self, target_pid, tmp):
        a = ["load", "--pid", str(target_pid)] + (["--filter", "all"] if self.filter_all else [])
        self.hwm_kb = 0
        self.loaded = True     # unload even if load half-succeeded
        rc, ru, out = self._swatch(*a)
        self.load_ru = ru
        if rc != 0:
            return f"swatch load rc={rc}: {tail(out)}"
        return None

    def stop(self):
        if self.loaded:
            rc, _ru, out = self._swatch("unload")
            self.loaded = False
            if rc != 0:
                log(f"bystander: swatch unload rc={rc}: {tail(out)}")
        ru = self.load_ru
        return (ru_cpu(ru) if ru else None), (getattr(self, "hwm_kb", 0) or None)


# --------------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------------
def summarize(runs, baseline_med):
    ok = [r for r in runs if "error" not in r and "result" in r]
    errs = [r["error"] for r in runs if "error" in r]
    s = {"runs_ok": len(ok), "runs_failed": len(errs)}
    if errs:
        s["errors"] = sorted(set(errs))[:3]
    if not ok:
        s["status"] = "failed"
        s["reason"] = errs[0] if errs else "not run"
        return s
    s["status"] = "ok"
    nspc = [r["result"]["ns_per_call"] for r in ok]
    s["calls"] = ok[0]["result"].get("calls")
    s["median_ns_per_call"] = med(nspc)
    s["min_ns_per_call"], s["max_ns_per_call"] = min(nspc), max(nspc)
    if "ns_per_op" in ok[0]["result"]:
        s["median_ns_per_op"] = med([r["result"]["ns_per_op"] for r in ok])
    s["median_loop_s"] = med([r["result"]["ns_total"] / 1e9 for r in ok])
    s["median_wall_s"] = med([r.get("wall_s") for r in ok])
    s["median_tracer_cpu_s"] = med([r.get("tracer_cpu_s") for r in ok])
    s["max_tracer_maxrss_kb"] = max((r.get("tracer_maxrss_kb") or 0 for r in ok), default=None) or None
    for key in ("children_seen", "delivered", "dropped", "jsonl_lines"):
        vals = [r[key] for r in ok if key in r]
        if vals:
            s["median_" + key] = med(vals)
    if "children" in ok[0]["result"]:
        s["children_expected"] = ok[0]["result"]["calls"]
        s["median_children_ok"] = med([r["result"].get("children_ok") for r in ok])
    notes = {r.get("note") for r in ok if r.get("note")}
    if notes:
        s["note"] = "; ".join(sorted(notes))
    if baseline_med:
        s["vs_untraced"] = s["median_ns_per_call"] / baseline_med
        s["added_ns_per_call"] = s["median_ns_per_call"] - baseline_med
    return s


def run_syscall_workloads(runner, bins, reps, only):
    setups = [S(bins) for S in SYSCALL_SETUPS]
    results = {}
    for wl in WORKLOADS:
        if only and wl.name not in only:
            continue
        results[wl.name] = {"desc": wl.desc, "runs": {s.name: [] for s in setups}}
    dead: dict[tuple, str] = {}
    for rep in range(reps):
        for wl in WORKLOADS:
            if wl.name not in results:
                continue
            order = setups[rep % len(setups):] + setups[:rep % len(setups)]
            for s in order:
                key = (wl.name, s.name)
                runs = results[wl.name]["runs"][s.name]
                why = s.unavailable() or dead.get(key)
                if why:
                    runs.append({"setup": s.name, "error": why})
                    continue
                rec = runner.run(s, wl)
                rec["rep"] = rep
                runs.append(rec)
                ok = "error" not in rec
                msg = (f"{rec['result']['ns_per_call']:.1f} ns/call" if ok
                       else "FAILED: " + oneline(rec["error"])[:200])
                log(f"  rep {rep + 1}/{reps} {wl.name:9s} {s.name:28s} {msg}")
                # two failures in a row and no success: stop wasting time on it
                if not ok and len(runs) >= 2 and all("error" in r for r in runs):
                    dead[key] = rec["error"]
    for wname, w in results.items():
        base = summarize(w["runs"]["untraced"], None).get("median_ns_per_call")
        w["summary"] = {name: summarize(runs, base) for name, runs in w["runs"].items()}
        w["untraced_median_ns_per_call"] = base
        peers = {n: s for n, s in w["summary"].items()
                 if s.get("status") == "ok" and n != "untraced" and not n.startswith("swatch")}
        if peers:
            best = min(peers, key=lambda n: peers[n]["median_ns_per_call"])
            w["best_peer"] = best
            for n, s in w["summary"].items():
                if s.get("status") == "ok":
                    s["vs_best_peer"] = s["median_ns_per_call"] / peers[best]["median_ns_per_call"]
    return results


def run_bystander(runner, bins, reps):
    wl = WORKLOADS[1]  # getppid
    tracers = [BNone("none (baseline)", runner, bins),
               BSyscount("syscount -p OTHER", runner, bins),
               BBpftrace("bpftrace count enter", runner, bins, False),
               BBpftrace("bpftrace count enter+exit", runner, bins, True),
               BSwatch("swatch load --pid OTHER", runner, bins, False),
               BSwatch("swatch load --pid OTHER --filter all", runner, bins, True)]
    runs = {t.name: [] for t in tracers}
    dead = {}
    for rep in range(reps):
        order = tracers[rep % len(tracers):] + tracers[:rep % len(tracers)]
        for tr in order:
            why = tr.unavailable() or dead.get(tr.name)
            if why:
                runs[tr.name].append({"error": why})
                continue
            trial = runner.new_trial(wl)
            target = spawn(["sleep", "3600"], desc="bystander target")
            rec = {"rep": rep}
            try:
                err = tr.start(target.pid, trial.tmp)
                if err:
                    rec["error"] = err
                else:
                    cmd = [str(c) for c in wl.argv(runner.quick, False, trial.tmp)]
                    with open(trial.tmp / "wl.out", "wb") as fo, open(trial.tmp / "wl.err", "wb") as fe:
                        p = spawn(cmd, stdout=fo, stderr=fe, env=runner.env(), desc="bystander workload")
                        st, _ru, _ = reap(p, runner.timeout, watch=(tr.proc,))
                    if st is None:
                        kill_group(p, signal.SIGKILL)
                        rec["error"] = "workload timeout"
                    else:
                        res = parse_result(read_text(trial.tmp / "wl.out"))
                        if res is None:
                            rec["error"] = f"no RESULT: {tail(read_text(trial.tmp / 'wl.err'))}"
                        else:
                            rec["result"] = res
            finally:
                cpu, rss = tr.stop()
                kill_group(target, signal.SIGKILL, grace=2.0)
                if not runner.args.keep_tmp:
                    shutil.rmtree(trial.tmp, ignore_errors=True)
            rec["tracer_cpu_s"], rec["tracer_maxrss_kb"] = cpu, rss
            runs[tr.name].append(rec)
            msg = (f"{rec['result']['ns_per_call']:.1f} ns/call" if "result" in rec
                   else "FAILED: " + oneline(rec.get("error", "?"))[:200])
            log(f"  rep {rep + 1}/{reps} bystander {tr.name:38s} {msg}")
            if "error" in rec and len(runs[tr.name]) >= 2 and all("error" in r for r in runs[tr.name]):
                dead[tr.name] = rec["error"]
    base = summarize(runs["none (baseline)"], None).get("median_ns_per_call")
    return {"desc": "getppid loop in a process nobody traces while the tracer watches a sleeping pid",
            "runs": runs, "summary": {n: summarize(r, base) for n, r in runs.items()},
            "untraced_median_ns_per_call": base}


class StreamBpftrace(Setup):
    """bpftrace printf per event, launched with -c (so wall time covers start-up and drain)."""
    name, does, needs = "bpftrace printf -c", "stream", ("bpftrace",)

    def launch_argv(self, cmd, t):
        s = 'tracepoint:raw_syscalls:sys_enter /pid == cpid/ { printf("%d %d\\n", pid, args->id); }'
        return [self.bins["bpftrace"], "-o", t.tmp / "bt.txt", "-e", s, "-c", " ".join(cmd)]

    def post(self, t, res, wl_pid):
        text = read_text(t.tmp / "bt.txt")
        ev = sum(1 for line in text.splitlines() if re.fullmatch(r"\d+ \d+", line))
        lost = sum(int(x) for x in re.findall(r"Lost (\d+) events", text + read_text(t.err) + read_text(t.out)))
        return {"delivered": ev, "dropped": lost}


class StreamStrace(Setup):
    name, does, needs = "strace -f -o FILE", "stream", ("strace",)

    def launch_argv(self, cmd, t):
        return [self.bins["strace"], "-f", "-o", t.tmp / "strace.txt", *cmd]

    def post(self, t, res, wl_pid):
        return {"delivered": count_lines(t.tmp / "strace.txt"), "dropped": 0,
                "note": "ptrace stops the tracee: nothing can be dropped"}


class StreamPerf(Setup):
    name, does, needs = "perf trace -o FILE", "stream", ("perf",)

    def launch_argv(self, cmd, t):
        return [self.bins["perf"], "trace", "-o", t.tmp / "perf.txt", "--", *cmd]

    def post(self, t, res, wl_pid):
        text = read_text(t.tmp / "perf.txt")
        lost = sum(int(x) for x in re.findall(r"LOST (\d+) events", text + read_text(t.err)))
        ev = sum(1 for line in text.splitlines() if line.strip() and "LOST" not in line)
        return {"delivered": ev, "dropped": lost}


def run_streaming(runner, bins, reps):
    n = 10_000 if runner.quick else 500_000
    wl = WORKLOADS[0]  # read storm
    setups = [SwatchStream(bins), StreamBpftrace(bins), StreamPerf(bins), StreamStrace(bins)]
    runs = {s.name: [] for s in setups}
    dead = {}
    for rep in range(reps):
        order = setups[rep % len(setups):] + setups[:rep % len(setups)]
        for s in order:
            why = s.unavailable() or dead.get(s.name)
            if why:
                runs[s.name].append({"error": why})
                continue
            rec = runner.run(s, wl, argv=[BUILD / wl.prog, n])
            rec["rep"] = rep
            if "error" not in rec and rec.get("wall_s"):
                rec["events_per_s"] = rec.get("delivered", 0) / rec["wall_s"]
                rec["events_per_s_loop"] = rec.get("delivered", 0) / (rec["result"]["ns_total"] / 1e9)
            runs[s.name].append(rec)
            msg = (f"delivered={rec.get('delivered')} dropped={rec.get('dropped')} "
                   f"{rec.get('events_per_s', 0):,.0f} ev/s" if "error" not in rec
                   else "FAILED: " + oneline(rec["error"])[:200])
            log(f"  rep {rep + 1}/{reps} streaming {s.name:24s} {msg}")
            if "error" in rec and len(runs[s.name]) >= 2 and all("error" in r for r in runs[s.name]):
                dead[s.name] = rec["error"]
    summary = {}
    for name, rs in runs.items():
        s = summarize(rs, None)
        ok = [r for r in rs if "error" not in r]
        if ok:
            s["median_events_per_s"] = med([r.get("events_per_s") for r in ok])
            s["median_events_per_s_loop"] = med([r.get("events_per_s_loop") for r in ok])
            s["total_delivered"] = sum(r.get("delivered", 0) for r in ok)
            s["total_dropped"] = sum(r.get("dropped", 0) for r in ok)
            if any("emitted" in r for r in ok):
                s["emitted_eq_delivered_plus_dropped_all_runs"] = all(
                    r.get("emitted_eq_delivered_plus_dropped") for r in ok)
            if any("jsonl_lines" in r for r in ok):
                s["jsonl_lines_match_delivered"] = all(r.get("jsonl_lines") == r.get("delivered") for r in ok)
        summary[name] = s
    return {"desc": f"{n} 1-byte reads; events delivered to a file on tmpfs / tracer wall time "
                    "(start-up and drain included); "
                    "events_per_s_loop divides by the workload's own loop time instead",
            "calls": n, "runs": runs, "summary": summary}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def fmt(x, spec="{:,.1f}", none="-"):
    if x is None:
        return none
    try:
        return spec.format(x)
    except (ValueError, TypeError):
        return str(x)


def oneline(text: str) -> str:
    return " | ".join(x.strip() for x in str(text).splitlines() if x.strip())


def print_tables(res):
    out = []
    for wname, w in res.get("workloads", {}).items():
        out.append(f"\n== {wname}: {w['desc']}  (best peer: {w.get('best_peer', '-')})")
        out.append(f"{'setup':30s} {'calls':>9s} {'ns/call':>11s} {'+ns/call':>10s} {'x untr':>8s} "
                   f"{'x best':>7s} {'trc cpu s':>9s} {'rss MB':>7s} {'kids':>7s}  status")
        for name, s in w["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:30s} {'':>9s} {'':>11s} {'':>10s} {'':>8s} {'':>7s} {'':>9s} {'':>7s} "
                           f"{'':>7s}  FAILED: {oneline(s.get('reason', ''))[:110]}")
                continue
            kids = ("-" if "median_children_seen" not in s
                    else f"{s['median_children_seen']:.0f}/{s.get('children_expected', '?')}")
            rss = s.get("max_tracer_maxrss_kb")
            out.append(f"{name:30s} {fmt(s.get('calls'), '{:,}'):>9s} {fmt(s['median_ns_per_call']):>11s} "
                       f"{fmt(s.get('added_ns_per_call')):>10s} {fmt(s.get('vs_untraced'), '{:.2f}'):>8s} "
                       f"{fmt(s.get('vs_best_peer'), '{:.2f}'):>7s} {fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} "
                       f"{fmt(rss / 1024 if rss else None, '{:.1f}'):>7s} {kids:>7s}  ok {s['runs_ok']}"
                       + (f" (+{s['runs_failed']} failed)" if s["runs_failed"] else ""))
    b = res.get("bystander")
    if b:
        out.append(f"\n== bystander: {b['desc']}")
        out.append(f"{'tracer on another pid':40s} {'ns/call':>10s} {'x none':>8s} {'+ns':>8s} "
                   f"{'trc cpu s':>9s} {'rss MB':>7s}")
        for name, s in b["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:40s} FAILED: {oneline(s.get('reason', ''))[:110]}")
                continue
            rss = s.get("max_tracer_maxrss_kb")
            out.append(f"{name:40s} {fmt(s['median_ns_per_call']):>10s} {fmt(s.get('vs_untraced'), '{:.2f}'):>8s} "
                       f"{fmt(s.get('added_ns_per_call')):>8s} {fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} "
                       f"{fmt(rss / 1024 if rss else None, '{:.1f}'):>7s}")
    st = res.get("streaming")
    if st:
        out.append(f"\n== streaming: {st['desc']}")
        out.append(f"{'setup':24s} {'delivered':>10s} {'dropped':>9s} {'wall s':>8s} {'events/s':>12s} "
                   f"{'ns/call':>10s} {'trc cpu s':>9s} {'rss MB':>7s}")
        for name, s in st["summary"].items():
            if s.get("status") != "ok":
                out.append(f"{name:24s} FAILED: {oneline(s.get('reason', ''))[:110]}")
                continue
            rss = s.get("max_tracer_maxrss_kb")
            out.append(f"{name:24s} {fmt(s.get('median_delivered'), '{:,.0f}'):>10s} "
                       f"{fmt(s.get('median_dropped'), '{:,.0f}'):>9s} {fmt(s.get('median_wall_s'), '{:.2f}'):>8s} "
                       f"{fmt(s.get('median_events_per_s'), '{:,.0f}'):>12s} {fmt(s['median_ns_per_call']):>10s} "
                       f"{fmt(s.get('median_tracer_cpu_s'), '{:.3f}'):>9s} {fmt(rss / 1024 if rss else None, '{:.1f}'):>7s}")
    print("\n".join(out), flush=True)


def _import_pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_chart(res, path: Path):
    try:
        plt = _import_pyplot()
    except ImportError as e:
        return (f"matplotlib is not importable by {sys.executable} ({e}); `sudo make bench-deps` "
                "installs it into .venv: run with .venv/bin/python")
    wls = res.get("workloads", {})
    panels = len(wls) + (1 if res.get("bystander") else 0) + (1 if res.get("streaming") else 0)
    if panels == 0:
        return "nothing to chart"
    cols = 2
    rows = (panels + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(14, 4.2 * rows), squeeze=False)
    axes = [a for row in axes for a in row]
    i = 0

    def colour(name):
        if name.startswith("swatch"):
            return "tab:green"
        if name.startswith("untraced") or name.startswith("none"):
            return "tab:gray"
        return "tab:blue"

    for wname, w in wls.items():
        ax = axes[i]
        i += 1
        names = [n for n, s in w["summary"].items() if s.get("status") == "ok"]
        vals = [w["summary"][n]["vs_untraced"] or 0 for n in names]
        bars = ax.barh(names, vals, color=[colour(n) for n in names])
        ax.set_xscale("log")
        ax.set_title(f"{wname}: slowdown vs untraced (own-loop ns/call, median)")
        ax.invert_yaxis()
        for b_, v in zip(bars, vals):
            ax.text(v, b_.get_y() + b_.get_height() / 2, f" {v:.2f}x", va="center", fontsize=8)
        failed = [n for n, s in w["summary"].items() if s.get("status") != "ok"]
        if failed:
            ax.set_xlabel("failed: " + ", ".join(failed), fontsize=8, color="tab:red")
    b = res.get("bystander")
    if b:
        ax = axes[i]
        i += 1
        names = [n for n, s in b["summary"].items() if s.get("status") == "ok"]
        vals = [b["summary"][n]["median_ns_per_call"] for n in names]
        bars = ax.barh(names, vals, color=[colour(n) for n in names])
        ax.set_title("bystander: untraced getppid ns/call while tracing another pid")
        ax.invert_yaxis()
        for b_, v in zip(bars, vals):
            ax.text(v, b_.get_y() + b_.get_height() / 2, f" {v:.0f}", va="center", fontsize=8)
    st = res.get("streaming")
    if st:
        ax = axes[i]
        i += 1
        names = [n for n, s in st["summary"].items() if s.get("status") == "ok"]
        vals = [st["summary"][n].get("median_events_per_s") or 0 for n in names]
        bars = ax.barh(names, vals, color=[colour(n) for n in names])
        ax.set_title("streaming: events delivered per second of tracer wall time")
        ax.invert_yaxis()
        for b_, v, n in zip(bars, vals, names):
            d = st["summary"][n].get("median_dropped")
            ax.text(v, b_.get_y() + b_.get_height() / 2, f" {v:,.0f}/s, dropped {d or 0:,.0f}",
                    va="center", fontsize=8)
    for ax in axes[i:]:
        ax.axis("off")
    m = res["meta"]
    fig.suptitle(f"swatch bench — {m['kernel']} — {m['cpus']} CPUs — {m['runs_per_setup']} interleaved runs, "
                 f"medians{' (QUICK)' if m['quick'] else ''}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and 2 runs: a smoke run, about a minute")
    ap.add_argument("--runs", type=int, default=None, help="interleaved repetitions (default 5, quick 2)")
    ap.add_argument("--only", default="", help="comma list of parts: read,getppid,forkexec,fileio,bystander,streaming")
    ap.add_argument("--swatch", default=os.environ.get("SWATCH", str(DEFAULT_SWATCH)), help="swatch CLI path")
    ap.add_argument("--pin-dir", default=DEFAULT_PIN_DIR, help="private bpffs pin dir for swatch load")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="scratch dir (tmpfs): workload files and tracer output files")
    ap.add_argument("--no-install", action="store_true",
                    help="no effect, kept for older command lines: run.py never installs "
                         "(make bench-deps does)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--chart", default=str(HERE / "results.png"))
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args(argv)
    reps = args.runs or (2 if args.quick else 5)
    only = {x.strip() for x in args.only.split(",") if x.strip()}

    if os.geteuid() != 0:
        sys.exit("bench/run.py must run as root (BPF tracers, perf, ptrace of other pids)")
    signal.signal(signal.SIGTERM, _sigterm)
    set_child_subreaper()
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored
    t_start = time.monotonic()
    progs_before = bpf_prog_ids()
    try:
        build_workloads()
        bins, peer_notes, versions = find_peers()
        sw = Path(args.swatch)
        bins["swatch"] = str(sw) if sw.exists() and os.access(sw, os.X_OK) else None
        meta = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_start": os.getloadavg(), "quick": args.quick, "runs_per_setup": reps,
            "interleaved": "round-robin over the setups of a workload each repetition, order rotated per repetition",
            "binaries": bins, "versions": versions, "peer_notes": peer_notes,
            "workload_sizes": {w.name: {"fast": w._n[(args.quick, False)], "slow_tracers": w._n[(args.quick, True)]}
                               for w in WORKLOADS},
            "slow_tracers": [S.name for S in SYSCALL_SETUPS if S.slow],
            "note": ("ns_per_call is timed by the workload around its own loop; slow (ptrace/perf/printf) "
                     "tracers run fewer calls, which does not change a per-call figure"),
        }
        if bins["swatch"] is None:
            meta["swatch"] = f"swatch CLI not found at {sw}: swatch setups reported as failed"
            log(meta["swatch"])
        if bins["swatch"] and not is_bpffs("/sys/fs/bpf"):
            r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True, text=True)
            meta["bpffs"] = "mounted bpffs on /sys/fs/bpf" if r.returncode == 0 else f"mount bpffs failed: {r.stderr}"
        if bins["swatch"]:
            def _final_unload():
                if os.path.isdir(args.pin_dir):
                    subprocess.run([bins["swatch"], "unload", "--pin-dir", args.pin_dir],
                                   capture_output=True, timeout=60, env=dict(os.environ, SWATCH_PIN_DIR=args.pin_dir))
                    try:
                        os.rmdir(args.pin_dir)
                    except OSError:
                        pass
            _CLEANUP_HOOKS.insert(0, _final_unload)
        runner = Runner(args, bins)
        res = {"meta": meta}
        wl_only = only & {w.name for w in WORKLOADS} if only else None
        if not only or wl_only:
            log(f"syscall workloads: {reps} interleaved runs per setup")
            t_phase = time.monotonic()
            res["workloads"] = run_syscall_workloads(runner, bins, reps, wl_only)
            meta["phase_s_workloads"] = time.monotonic() - t_phase
        if not only or "bystander" in only:
            log("bystander")
            t_phase = time.monotonic()
            res["bystander"] = run_bystander(runner, bins, reps)
            meta["phase_s_bystander"] = time.monotonic() - t_phase
        if not only or "streaming" in only:
            log("streaming")
            t_phase = time.monotonic()
            res["streaming"] = run_streaming(runner, bins, reps)
            meta["phase_s_streaming"] = time.monotonic() - t_phase
        meta["elapsed_s"] = time.monotonic() - t_start
        meta["loadavg_end"] = os.getloadavg()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        cleanup()
        sys.exit(130)
    finally:
        cleanup()
    # leftovers: our processes, pins, BPF programs
    time.sleep(0.5)
    progs_after = bpf_prog_ids()
    left = {}
    if progs_before is not None and progs_after is not None:
        new = {i: n for i, n in progs_after.items() if i not in progs_before}
        if new:
            left["bpf_progs_new_since_start"] = new
            left["note"] = "may belong to other users of this machine; pids of ours all ended"
    if os.path.exists(args.pin_dir):
        left["pin_dir_still_exists"] = args.pin_dir
    left["our_processes_alive"] = list(_LIVE.values())
    res["leftovers"] = left
    Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print_tables(res)
    why = write_chart(res, Path(args.chart))
    print(f"\nresults: {args.out}", flush=True)
    print(f"chart:   {args.chart}" if why is None else f"chart:   skipped: {why}", flush=True)
    if left.get("bpf_progs_new_since_start") or left.get("pin_dir_still_exists"):
        print(f"leftovers: {json.dumps(left)}", flush=True)
    print(f"elapsed: {meta.get('elapsed_s', 0):.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
