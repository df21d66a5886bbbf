"""Output a traced workload cannot forge (issue 8, items 18-20).

- Human lines escape every control a workload can put in a field: its process name
  (prctl PR_SET_NAME), argv, paths, fd names, socket paths, denial targets.
- A cut path is marked where the cut is: ".../tail" for paths the kernel walks from the file up
  (fd names, denial targets), "head..." for user strings read head-first; in JSON too.
- Bytes that are not UTF-8 are surrogate-escaped in JSON (\\udcXX) and come back exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SWATCH, parse_record, read_events

EVIL_COMM = b"\x1b[2J\xffevil\x9b"  # 15 bytes at most: the kernel's TASK_COMM_LEN
EVIL_NAME = b"f\x1b]0;pwn\x07\xff\xc2\x9b\xe2\x80\xaez"
EVIL_ARGV = [b"true", b"\x1b[31mred", b"\xff\xfe", "ÿ".encode(), b"a b"]

WORKLOAD = textwrap.dedent("""\
    import ctypes, os, sys
    d = os.fsencode(sys.argv[1])
    ctypes.CDLL(None).prctl(15, {comm!r}, 0, 0, 0)   # PR_SET_NAME
    os.close(os.open(d + b"/" + {name!r}, os.O_CREAT | os.O_WRONLY, 0o600))
    deep = d + b"/spoof/" + b"x" * 250 + b"/etc"
    os.makedirs(deep)
    with open(deep + b"/shadow", "wb") as f:
        f.write(b"root:x\\n")
    fd = os.open(deep + b"/shadow", os.O_RDONLY)
    os.read(fd, 100)
    os.close(fd)
    os.execv(b"/bin/true", {argv!r})
""").format(comm=EVIL_COMM, name=EVIL_NAME, argv=EVIL_ARGV)


def _run_workload(tmp_path: Path, *opts: str) -> tuple[bytes, Path]:
    d = Path(os.path.realpath(tmp_path))
    script = d / "forge.py"
    script.write_text(WORKLOAD)
    work = d / "w"
    work.mkdir()
    proc = subprocess.run([SWATCH, "run", "--color", "never", "-o", "-", *opts, "--",
                           sys.executable,
                           "-S", str(script), str(work)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, work


def test_json_non_utf8_round_trips_and_cuts_are_marked(tmp_path: Path) -> None:
    out = tmp_path / "ev.jsonl"
    _, work = _run_workload(tmp_path, "--json", "-o", str(out))
    events = read_events(out)
    raw = os.fsencode(work)

    def b(s: str) -> bytes:
        return s.encode("utf-8", "surrogateescape")

    # Item 20: the process name, a created file's name and argv come back byte for byte;
    # 0xff (not UTF-8) and "ÿ" (U+00FF, valid) stay different.
    renamed = [e for e in events if b(e["comm"]) == EVIL_COMM]
    assert renamed, {e["comm"] for e in events}
    created = [e for e in events if e["type"] == "syscall" and e.get("path")
               and b(e["path"]) == raw + b"/" + EVIL_NAME]
    assert created and created[0]["ret"] >= 0
    execs = [e for e in events if e["type"] == "exec" and e["filename"] == "/bin/true"]
    assert [b(a) for a in execs[0]["argv"]] == EVIL_ARGV
    assert execs[0]["argv"][2] == "\udcff\udcfe" and execs[0]["argv"][3] == "\u00ff"

    # Item 19: the read names its fd by the kernel's walk, which kept the tail.
    reads = [e for e in events if e["type"] == "syscall" and e["syscall"] == "read"
             and e.get("fd_name", "").endswith("/etc/shadow")]
    assert reads, "no read of the deep file"
    assert reads[0]["fd_name"] == ".../etc/shadow"
    assert reads[0]["truncated"] is True and reads[0]["truncated_fields"] == ["fd_name"]
    # The open's path is the user's string, read head-first: the head is kept.
    opens = [e for e in events if e["type"] == "syscall" and e["syscall"] == "openat"
             and e.get("path", "").startswith(f"{work}/spoof/")]
    assert opens and all(o["path"].endswith("x...") for o in opens)
    assert all(len(o["path"]) == 255 + 3 and o["truncated_fields"] == ["path"] for o in opens)


def test_human_lines_escape_every_field(tmp_path: Path) -> None:
    stdout, work = _run_workload(tmp_path)
    # Item 18: not one control byte reaches the terminal, whatever the field.
    for bad in (b"\x1b", b"\x07", b"\x9b", b"\xff", b"\xc2\x9b", b"\xe2\x80\xae"):
        assert bad not in stdout, bad
    text = stdout.decode()
    lines = text.splitlines()
    renamed = [ln for ln in lines if "\\x1b[2J\\xffevil\\x9b" in ln]
    assert renamed, "the renamed process's lines do not show its escaped name"
    assert any(f'OPEN    "{work}/f\\x1b]0;pwn\\x07\\xff\\u009b\\u202ez" -> fd ' in ln
               for ln in renamed), renamed
    # Item 19: the cut is where it is.
    assert any('READ    7 bytes from ".../etc/shadow"' in ln for ln in lines), text
    assert not any('"/etc/shadow..."' in ln for ln in lines)
    assert any(f'"{work}/spoof/' in ln and 'x..." -> fd ' in ln for ln in lines)
    assert 'EXEC    /bin/true "\\x1b[31mred" "\\xff\\xfe" ÿ "a b"' in text


# ---------------------------------------------------------------- the formatter on any bytes
# Not mocked away, just cheaper than one process per example: the C formatter fed exec records
# built here, with byte strings no kernel test could enumerate. The kernel path is covered above.


def _format_exec(filename: bytes, argv: list[bytes], comm: bytes, mode: int) -> bytes:
    from syscall_watcher.trace import stream
    from syscall_watcher.kernel._libbpf import ffi, lib

    stream.setup_formatter()
    ev = ffi.new("struct sw_exec_event *")
    ev.hdr.type = lib.SW_EV_EXEC
    ev.hdr.pid = 4242
    ev.hdr.comm = comm
    data = filename + b"\0" + b"".join(a + b"\0" for a in argv)
    ev.filename_len = len(filename) + 1
    ev.argv_len = len(data) - ev.filename_len
    ev.argc = len(argv)
    ffi.memmove(ev.data, data, len(data))
    ev.hdr.size = ffi.offsetof("struct sw_exec_event", "data") + len(data)
    recs = ffi.buffer(ev)[:]
    out = ffi.new("char[]", 1 << 16)
    pos = ffi.new("size_t *")
    n = lib.sw_format(recs, len(recs), pos, mode, 0, out, 1 << 16)
    # A human EXEC line is held for start-up folding: release it as the stream would.
    n += lib.sw_fmt_release_held(2**63, 0, 0, out + n, (1 << 16) - n)
    return ffi.buffer(out, n)[:]


no_nul = st.binary(max_size=60).map(lambda b: b.replace(b"\0", b"\1"))


@settings(max_examples=400, deadline=None)
@given(filename=no_nul, args=st.lists(no_nul, max_size=4), comm=st.binary(max_size=15))
def test_json_is_surrogateescape_of_the_bytes(filename: bytes, args: list[bytes],
                                              comm: bytes) -> None:
    from syscall_watcher.kernel._libbpf import lib

    comm = comm.replace(b"\0", b"\1")
    line = _format_exec(filename, args, comm, lib.SW_OUT_JSON)
    doc = parse_record(line)
    assert doc["filename"] == filename.decode("utf-8", "surrogateescape")
    assert [a.encode("utf-8", "surrogateescape") for a in doc["argv"]] == args
    assert doc["comm"].encode("utf-8", "surrogateescape") == comm


@settings(max_examples=400, deadline=None)
@given(filename=no_nul, args=st.lists(no_nul, max_size=4), comm=st.binary(max_size=15))
def test_human_line_has_no_control_bytes(filename: bytes, args: list[bytes],
                                         comm: bytes) -> None:
    from syscall_watcher.kernel._libbpf import lib

    comm = comm.replace(b"\0", b"\1")
    line = _format_exec(filename, args, comm, lib.SW_OUT_HUMAN)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line[:-1].decode("utf-8")  # strict: every byte that was not UTF-8 is escaped
    for ch in text:
        cp = ord(ch)
        assert cp >= 0x20 and cp != 0x7F and not 0x80 <= cp <= 0x9F, (ch, text)
        assert not 0x202A <= cp <= 0x202E and not 0x2066 <= cp <= 0x2069, (ch, text)


# ------------------------------------------------------------------------------- denials


def _denied_write(tmp_path: Path, json_lines: bool) -> str:
    """A write through an fd opened before load, to a file whose path is too long for the
    kernel's walk, by a process that renamed itself, under read-only-fs; what `swatch watch`
    (JSON or human lines) wrote about it once the denial is in."""
    import uuid

    from conftest import new_pin_dir, stop, wait_for
    from test_policy_enforce import load

    deep = Path(os.path.realpath(tmp_path)) / "spoof" / ("x" * 250) / "etc"
    deep.mkdir(parents=True, exist_ok=True)
    target = deep / "shadow"
    target.write_text("")
    ppin = Path(f"/sys/fs/bpf/swatch-test-policy-{uuid.uuid4().hex[:10]}")
    out = tmp_path / f"watch-{uuid.uuid4().hex[:8]}"
    fd = os.open(target, os.O_WRONLY)  # before load: only the write itself can be denied
    try:
        t = _gated_with_fd(fd, f"import ctypes\nctypes.CDLL(None).prctl(15, {EVIL_COMM!r}, 0, "
                               f"0, 0)\nos.write({fd}, b'x')\n")
    finally:
        os.close(fd)
    w = None
    try:
        load(ppin, t, "read-only-fs")
        w = subprocess.Popen([SWATCH, "watch", *(["--json"] if json_lines else []),
                              "--pin-dir", str(new_pin_dir("none")), "--policy-pin-dir",
                              str(ppin), "--output", str(out), "--duration", "30"])
        t.go()
        word = b'"type":"denied"' if json_lines else b"DENIED"
        assert wait_for(lambda: out.exists() and word in out.read_bytes(), timeout=10)
    finally:
        if w is not None:
            stop(w)
        subprocess.run([SWATCH, "policy-unload", "--pin-dir", str(ppin)], capture_output=True)
        if t.proc.poll() is None:
            t.proc.send_signal(signal.SIGKILL)
    return out.read_text(errors="strict")


def test_denial_escaped_and_cut_marked(tmp_path: Path) -> None:
    """The denial's target is ".../tail" and its process name comes back exactly in JSON and
    escaped in the human line (both written by the C formatter, as trace records are)."""
    denied = [parse_record(line) for line in _denied_write(tmp_path, True).splitlines()]
    d = next(e for e in denied if e["type"] == "denied")
    assert d["target"] == ".../etc/shadow" and d["truncated"] is True, d
    assert d["truncated_fields"] == ["target"], d
    assert d["comm"].encode("utf-8", "surrogateescape") == EVIL_COMM
    line = next(ln for ln in _denied_write(tmp_path, False).splitlines() if "DENIED" in ln)
    assert "\x1b" not in line and "\x9b" not in line
    # the same prefix as a trace line: TIME PID COMM (pid first, comm padded), then the verb
    assert "\\x1b[2J\\xffevil\\x9b " in line and " .../etc/shadow " in line, line


def _gated_with_fd(fd: int, code: str):  # type: ignore[no-untyped-def]
    from test_policy_enforce import Gated

    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-B", "-c",
                             "import os, sys\nsys.stdin.readline()\n" + code],
                            stdin=r, pass_fds=(fd,), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os.close(r)
    g = Gated.__new__(Gated)
    g.proc = proc
    g._w = w
    return g
