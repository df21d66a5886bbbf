"""Shared fixtures. Everything here runs as root against the real kernel: tests load the real
BPF programs and assert on what the kernel reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from syscall_watcher.data import audit_schema, record_schema

ROOT = Path(__file__).resolve().parent.parent
SWATCH = str(Path(sys.executable).parent / "swatch")
WORKLOADS = ROOT / "build" / "workloads"
# Pins a test session makes carry its pid, so a session clears only its own dead runs' pins,
# never those of another session running at the same time (another worktree, the lead's suite).
TEST_PIN_PREFIX = f"/sys/fs/bpf/swatch-test-{os.getpid()}-"
OUR_PROGS = {"sw_sys_enter", "sw_sys_exit", "sw_exec", "sw_fork", "sw_exit",
             # the io_uring pair: full names (bpftool, from BTF) and the kernel's 15 bytes
             "sw_uring_submit_req", "sw_uring_submit_sqe", "sw_uring_complete",
             "sw_uring_submit", "sw_uring_comple"}
# The enforcer's programs all start with this (kernel names are cut at 15 characters).
OUR_PROG_PREFIX = "swp_"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm_inner: runs only inside the VM that "
                            "tests/test_policy_vm.py boots (SWATCH_IN_VM=1)")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        pytest.exit("swatch's tests load BPF programs: run them as root (make test)", 2)
    # A test run that was killed outright (SIGKILL) cannot run its teardown: clear its pins —
    # only those whose session (the pid in the name) is gone.
    bpffs = Path("/sys/fs/bpf")
    if bpffs.is_dir():
        for d in bpffs.glob("swatch-test-*"):  # each refuses the other's directories
            owner = d.name.split("-")[2]
            if not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            subprocess.run([SWATCH, "unload", "--pin-dir", str(d)], capture_output=True)
            subprocess.run([SWATCH, "policy-unload", "--pin-dir", str(d)], capture_output=True)


def new_pin_dir(kind: str) -> Path:
    """A fresh bpffs pin directory for this session (swept if the session dies)."""
    return Path(f"{TEST_PIN_PREFIX}{kind}-{uuid.uuid4().hex[:10]}")


def swatch(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
           check: bool = False, **kw) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([SWATCH, *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"swatch {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


# The JSON Schema of swatch's output (syscall_watcher/data/schema/): every JSON line a test reads
# through read_events / events_until (and the status/summary documents it parses) is validated.
SCHEMA = record_schema()
RECORD_TYPES = tuple(ref["$ref"].rsplit("/", 1)[1] for ref in SCHEMA["oneOf"])
# each definition with the others beside it, so that its $refs (detect's documents) resolve
_VALIDATORS = {name: Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{name}"})
               for name in SCHEMA["$defs"]}
_WHOLE = Draft202012Validator(SCHEMA)


def _check(name: str, doc: object) -> None:
    errors = sorted(_VALIDATORS[name].iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(map(str, errors[0].absolute_path)) or "(top)"
        raise AssertionError(f"not a valid `{name}` ({len(errors)} errors; first at {where}: "
                             f"{errors[0].message}): {doc}")


def check_record(doc: dict) -> dict:  # type: ignore[type-arg]
    """A JSON line swatch wrote, validated against the schema (its type's definition, and the
    schema as a whole: exactly one record type); returned as it is."""
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind not in RECORD_TYPES:
        raise AssertionError(f"a record of no known type ({', '.join(RECORD_TYPES)}): {doc}")
    _check(kind, doc)
    _WHOLE.validate(doc)
    return doc


def check_document(name: str, doc: object) -> object:
    """A document a command printed (`summary_doc`, `status_doc`, `policy_summary_doc`),
    validated against the schema; returned as it is."""
    _check(name, doc)
    return doc


def parse_record(line: str | bytes) -> dict:  # type: ignore[type-arg]
    return check_record(json.loads(line))


def read_events(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [parse_record(line) for line in path.read_text().splitlines() if line.strip()]


# The audit log's records (data/schema/audit.schema.json): an `event` record's event is a record
# of the output schema (by its $id). Tests that append made-up events (test_audit's) check the
# envelope only.
AUDIT_SCHEMA = audit_schema()
_AUDIT_REGISTRY = Registry().with_resources(
    [(s["$id"], Resource.from_contents(s)) for s in (AUDIT_SCHEMA, SCHEMA)])
_ENVELOPE_SCHEMA = json.loads(json.dumps(AUDIT_SCHEMA))
_ENVELOPE_SCHEMA["$defs"]["event"]["properties"]["event"] = {"type": "object"}
_ENVELOPE_REGISTRY = Registry().with_resources(
    [(s["$id"], Resource.from_contents(s)) for s in (_ENVELOPE_SCHEMA, SCHEMA)])
# One validator per kind (the whole schema's oneOf costs ~1 ms a record; these ~50 us), the
# event inside checked by its own type's definition.
AUDIT_KINDS = tuple(ref["$ref"].rsplit("/", 1)[1] for ref in AUDIT_SCHEMA["oneOf"])
_AUDIT_KIND = {k: Draft202012Validator({"$ref": f"urn:swatch:schema:audit#/$defs/{k}"},
                                       registry=_ENVELOPE_REGISTRY) for k in AUDIT_KINDS}
_CHECKPOINT = Draft202012Validator({"$ref": "urn:swatch:schema:audit#/$defs/checkpoint"},
                                   registry=_AUDIT_REGISTRY)


def check_audit_record(rec: dict, real: bool = True) -> dict:  # type: ignore[type-arg]
    """An audit log record validated against its kind's definition in the audit schema
    (``real``: its event, too, against its type's in the output schema); returned as it is."""
    kind = rec.get("kind") if isinstance(rec, dict) else None
    if kind not in _AUDIT_KIND:
        raise AssertionError(f"an audit record of no known kind ({', '.join(AUDIT_KINDS)}): "
                             f"{rec}")
    errors = list(_AUDIT_KIND[kind].iter_errors(rec))
    if errors:
        best = min(errors, key=lambda e: len(list(e.absolute_path)))
        raise AssertionError(f"not a valid audit record ({best.message} at "
                             f"{'/'.join(map(str, best.absolute_path)) or '(top)'}): {rec}")
    if kind == "event" and real:
        event = rec["event"]
        if event.get("type") not in RECORD_TYPES:
            raise AssertionError(f"an audit event of no known record type: {rec}")
        _check(event["type"], event)
    return rec


def read_audit(audit_dir: Path, real: bool = True) -> list[dict]:  # type: ignore[type-arg]
    """Every record of an audit log, in order, each validated (and every checkpoint line)."""
    recs = []
    for f in sorted(audit_dir.glob("records-*.jsonl")):
        recs += [check_audit_record(json.loads(line), real)
                 for line in f.read_bytes().splitlines()]
    cps = audit_dir / "checkpoints.jsonl"
    if cps.exists():
        for line in cps.read_bytes().splitlines():
            _CHECKPOINT.validate(json.loads(line))
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    return recs


def our_prog_ids() -> set[int]:
    """IDs of loaded BPF programs named like ours, from the kernel's own list (bpftool)."""
    out = subprocess.run(["bpftool", "prog", "list", "-j"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"] for p in json.loads(out or "[]") if p.get("name") in OUR_PROGS or p.get("name", "").startswith(OUR_PROG_PREFIX)}


def wait_for(cond, timeout: float = 5.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    return cond()


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (every thread's), from the kernel's own list."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread (or the process) is gone
    return found


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def child_running(parent: int, name: str, timeout: float = 10) -> int:
    """Wait until ``parent`` has a child whose command is ``name`` (it has exec'd); its pid."""
    def find() -> int | None:
        return next((c for c in children(parent) if comm(c) == name), None)

    pid = wait_for(find, timeout)
    assert pid, f"pid {parent} has no child {name!r} after {timeout}s"
    return pid


def blocked_reading(pid: int, fd: int = 0, timeout: float = 10) -> None:
    """Wait until ``pid`` sleeps in read(2) on ``fd`` (/proc/PID/syscall: number, then args)."""
    from syscall_watcher.kernel.syscalls import table

    want = f"{table()['read']} {fd:#x} "

    def reading() -> bool:
        try:
            return Path(f"/proc/{pid}/syscall").read_text().startswith(want)
        except OSError:
            return False

    assert wait_for(reading, timeout), f"pid {pid} never blocked reading fd {fd}"


def watching(pin_dir: Path, watcher: subprocess.Popen[bytes] | subprocess.Popen[str] | int,
             timeout: float = 10) -> None:
    """Wait until `swatch watch` (``watcher``: its Popen or pid) streams from the tracer pinned
    at ``pin_dir``."""
    pid = watcher if isinstance(watcher, int) else watcher.pid

    def attached() -> bool:
        r = subprocess.run([SWATCH, "status", "--json", "--pin-dir", str(pin_dir)],
                           capture_output=True, text=True)
        return (r.returncode == 0
                and check_document("status_doc", json.loads(r.stdout)).get("watching")  # type: ignore[attr-defined]
                == pid)

    assert wait_for(attached, timeout), f"swatch watch (pid {pid}) never attached"


def events_until(out: Path, cond: Callable[[list[dict]], bool],  # type: ignore[type-arg]
                 timeout: float = 10) -> list[dict]:  # type: ignore[type-arg]
    """The JSON events written to ``out`` once ``cond(events)`` holds (asserted). Each poll
    parses only the lines completed since the last one: a system-wide trace on a busy machine
    grows fast, and parsing (and validating) the whole file again at every poll fell behind it."""
    events: list[dict] = []  # type: ignore[type-arg]
    done = 0  # bytes of complete lines parsed so far

    def read() -> list[dict]:  # type: ignore[type-arg]
        nonlocal done
        try:
            with out.open("rb") as f:
                f.seek(done)
                data = f.read()
        except FileNotFoundError:
            return events
        complete = data.rfind(b"\n") + 1  # the last line may still be half written
        events.extend(parse_record(line) for line in data[:complete].decode().splitlines()
                      if line.strip())
        done += complete
        return events

    assert wait_for(lambda: cond(read()), timeout), \
        f"{out}: condition not met in {timeout}s; last events: {read()[-3:]}"
    return read()


def stop(proc: subprocess.Popen, timeout: float = 15) -> int:  # type: ignore[type-arg]
    """Ctrl-C for a swatch process we started; its exit status."""
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=timeout)


@pytest.fixture
def pin_dir():  # type: ignore[no-untyped-def]
    """A private pin dir, unloaded afterwards whatever happened."""
    d = new_pin_dir("trace")
    yield d
    subprocess.run([SWATCH, "unload", "--pin-dir", str(d)], capture_output=True)
    assert not d.exists(), f"{d} left behind"


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    """A TCP listener on 127.0.0.1 that accepts connections and reads what they send."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    received.append(conn.recv(1024))
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], received
    # shutdown() wakes the accept() blocked in the thread; close() alone would not. The thread
    # would stay in accept(2) on the closed socket's number, and the kernel restarts that call
    # on the number as it is then whenever a signal without a handler wakes the thread (a
    # SIGCHLD queued while a subprocess spawn blocked signals is one). A later test's listener
    # holds the number by then (the lowest free one): the restarted accept takes that test's
    # connection, reads it and closes it (stop 22's CI: a TLS client's handshake got EOF).
    srv.shutdown(socket.SHUT_RDWR)
    t.join(10)
    assert not t.is_alive(), "the listener's thread did not end"
    srv.close()


@pytest.fixture
def workload():  # type: ignore[no-untyped-def]
    def path(name: str) -> str:
        p = WORKLOADS / name
        assert p.exists(), f"{p} missing: run `make`"
        return str(p)

    return path


@pytest.fixture(autouse=True)
def no_leaked_programs():  # type: ignore[no-untyped-def]
    """Every test must leave the kernel's program list as it found it."""
    before = our_prog_ids()
    yield
    leaked = wait_for(lambda: not (our_prog_ids() - before), timeout=5)
    assert leaked, f"BPF programs left loaded: {our_prog_ids() - before}"


def which(name: str) -> str:
    p = shutil.which(name)
    assert p, f"{name} not installed"
    return p


def run_with_stalled_consumer(swatch_args: list[str], cmd: list[str],
                              timeout: float = 120) -> tuple[int, str]:
    """`swatch run SWATCH_ARGS -- CMD` with its consumer stopped (SIGSTOP) while CMD's storm
    runs, so a small ring buffer overflows for certain however fast the consumer is. CMD must
    wait for a byte on stdin first (build/workloads/storm ... gate); swatch is resumed once CMD
    has exited (a zombie nobody reaps while swatch is stopped). Returns (returncode, stderr)."""
    import signal

    p = subprocess.Popen([SWATCH, "run", *swatch_args, "--", *cmd], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None
    try:
        child = child_running(p.pid, Path(cmd[0]).name[:15])
        blocked_reading(child)  # CMD is traced and waits for us: the consumer is streaming
        os.kill(p.pid, signal.SIGSTOP)
        try:
            p.stdin.write("g")
            p.stdin.flush()

            def exited() -> bool:
                try:
                    stat = Path(f"/proc/{child}/stat").read_text()
                except OSError:
                    return True
                return stat[stat.rindex(")") + 2] == "Z"

            assert wait_for(exited, timeout=timeout), f"{cmd} did not finish"
        finally:
            os.kill(p.pid, signal.SIGCONT)
        _, err = p.communicate(timeout=timeout)  # closes CMD's stdin
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p.returncode, err
