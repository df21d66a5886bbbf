"""Bad input, every command: exactly one line on stderr (`swatch: error: ...`), a non-zero exit,
no traceback, and nothing loaded, unloaded or deleted.

Each case runs the installed `swatch` as a user would. Around each case we record the kernel's
list of our BPF programs (bpftool), the private pin dirs and every file or directory given as
an argument (contents and mtime), and check that none of it changed. The address space is
capped (RLIMIT_AS) so a case that reads without limit (`--policy /dev/zero`) fails the test
instead of taking the host down.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import SWATCH, our_prog_ids, swatch, wait_for

AS_LIMIT = 2 << 30
BAD_UID = str(99999999999)
HUGE_RING = str(1 << 40)


@pytest.fixture
def places(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Files and directories the cases name, a target process, and private pin dirs."""
    d = tmp_path / "dir"
    d.mkdir()
    (d / "keep.txt").write_text("keep me\n")
    f = tmp_path / "file.txt"
    f.write_text("an ordinary file\n")
    fifo = tmp_path / "policy.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.policy"
    big.write_bytes(b"# padding\n" * 200_000)  # 2 MB of comments: over the 1 MiB cap
    bad = tmp_path / "bad.policy"
    bad.write_text("block teleport\n")
    good = tmp_path / "good.policy"
    good.write_text("block connect\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    pin = Path(f"/sys/fs/bpf/swatch-test-bad-{uuid.uuid4().hex[:10]}")
    ppin = Path(f"/sys/fs/bpf/swatch-test-badp-{uuid.uuid4().hex[:10]}")
    values = {
        "dir": str(d), "file": str(f), "fifo": str(fifo), "big": str(big), "bad": str(bad),
        "good": str(good), "pid": str(sleeper.pid), "pin": str(pin), "ppin": str(ppin),
        "tmp": str(tmp_path),
    }
    try:
        yield values
    finally:
        sleeper.kill()
        sleeper.wait()
        # Whatever a failing case loaded, take it away (old code loaded some of these).
        swatch("unload", "--pin-dir", str(pin))
        swatch("policy-unload", "--pin-dir", str(ppin))


def _snapshot(paths: list[Path]) -> dict[str, tuple]:  # type: ignore[type-arg]
    """Type, mtime and contents of each path (a directory: its listing, recursively)."""
    snap: dict[str, tuple] = {}  # type: ignore[type-arg]
    for p in paths:
        if p.is_fifo():
            snap[str(p)] = ("fifo", p.stat().st_mtime_ns)
        elif p.is_dir():
            snap[str(p)] = ("dir", p.stat().st_mtime_ns,
                            sorted((str(c), c.read_bytes()) for c in p.rglob("*") if c.is_file()))
        elif p.exists():
            snap[str(p)] = ("file", p.stat().st_mtime_ns,
                            hashlib.sha256(p.read_bytes()).hexdigest())
        else:
            snap[str(p)] = ("absent",)
    return snap


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


# (argv with {placeholders}, words the one line must contain). The item of issue 8 each case
# checks is in the comment; the rest are the older one-line cases, kept across every command.
CASES: list[tuple[list[str], list[str]]] = [
    # load
    (["load", "--pid", "999999999", "--pin-dir", "{pin}"], ["no such process: 999999999"]),
    (["load", "--pid", "{pid}", "--ring-size", HUGE_RING, "--pin-dir", "{pin}"],
     ["power of two", "1073741824"]),  # 16
    (["load", "--pid", "{pid}", "--ring-size", "1000", "--pin-dir", "{pin}"], ["power of two"]),
    (["load", "--uid", BAD_UID, "--pin-dir", "{pin}"], ["--uid", "4294967294"]),  # 16
    (["load", "--uid", "no-such-user-xyz", "--pin-dir", "{pin}"], ["no such user"]),
    # several --pid are all targets (strace -p): each must exist, none silently dropped
    (["load", "--pid", "{pid}", "--pid", "999999999", "--pin-dir", "{pin}"],
     ["no such process: 999999999"]),  # 17
    (["load", "--no-children", "--pin-dir", "{pin}"], ["--no-children", "--pid only"]),  # 17
    (["load", "--comm", "sleep", "--no-children", "--pin-dir", "{pin}"],
     ["--no-children", "--pid only"]),  # 17
    (["load", "--pid", "abc", "--pin-dir", "{pin}"], ["--pid", "swatch load --help"]),
    (["load", "--pid", "{pid}", "--filter", "bogus", "--pin-dir", "{pin}"],
     ["unknown filter profile 'bogus'"]),
    (["load", "--pid", "{pid}", "--comm", "x", "--pin-dir", "{pin}"], ["choose one target"]),
    (["load", "--comm", "much-too-long-command-name", "--pin-dir", "{pin}"], ["1 to 15 bytes"]),
    (["load", "--no-such-option", "--pin-dir", "{pin}"], ["No such option"]),
    # watch
    (["watch", "--duration", "0", "--pin-dir", "{pin}"], ["--duration 0", "greater than 0"]),
    (["watch", "--duration", "-5", "--pin-dir", "{pin}"], ["--duration -5"]),  # 17
    (["watch", "--duration", "nan", "--pin-dir", "{pin}"], ["--duration nan"]),  # 17
    (["watch", "--color", "purple", "--pin-dir", "{pin}"],
     ["--color", "purple", "auto", "always", "never"]),  # 17
    (["watch", "--pin-dir", "{pin}"], ["nothing is loaded"]),
    # unload
    (["unload", "--pin-dir", "{file}"], ["{file}", "not a directory"]),  # 16 (and 1)
    (["unload", "--pin-dir", "{dir}"], ["{dir}", "nothing was removed"]),
    (["unload", "--pin-dir", ""], ["--pin-dir is empty"]),
    (["unload", "extra-argument"], ["unexpected extra argument"]),
    # status
    (["status", "--no-such-option"], ["No such option"]),
    (["status", "extra-argument"], ["unexpected extra argument"]),
    # run
    (["run", "-o", "/nonexistent/x", "--", "true"], ["/nonexistent/x", "No such file"]),  # 16
    (["run", "-o", "{dir}", "--", "true"], ["{dir}", "Is a directory"]),  # 16
    (["run", "--ring-size", HUGE_RING, "--", "true"], ["power of two"]),  # 16
    (["run", "--color", "purple", "--", "true"], ["--color", "purple"]),  # 17
    (["run", "--", "/no/such/program"], ["command not found"]),
    (["run"], ["no command given"]),
    (["run", "--filter", "nope", "--", "true"], ["unknown filter profile"]),
    # summary
    (["summary", "--top", "-3", "--pin-dir", "{pin}"], ["--top -3"]),  # 17
    (["summary", "--top", "0", "--pin-dir", "{pin}"], ["--top 0"]),  # 17
    (["summary", "--interval", "0", "--pin-dir", "{pin}"], ["--interval 0"]),
    (["summary", "--interval", "nan", "--pin-dir", "{pin}"], ["--interval nan"]),  # 17
    (["summary", "--by", "nope", "--pin-dir", "{pin}"], ["--by 'nope'"]),
    (["summary", "--sort", "nope", "--pin-dir", "{pin}"], ["--sort 'nope'"]),
    (["summary", "--once", "--pin-dir", "{pin}"], ["nothing is loaded"]),
    # policy-load
    (["policy-load", "--policy", "/dev/zero", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["/dev/zero", "regular file", "character device"]),  # 15
    (["policy-load", "--policy", "{fifo}", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["regular file", "FIFO"]),  # 15
    (["policy-load", "--policy", "{dir}", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["regular file", "directory"]),  # 15
    (["policy-load", "--policy", "{big}", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["too large"]),  # 15
    (["policy-load", "--policy", "{tmp}/no\nsuch\x1b[2J.policy", "--pid", "{pid}",
      "--pin-dir", "{ppin}"], ["no\\x0asuch\\x1b[2J.policy", "No such file"]),  # 16
    (["policy-load", "--policy", "{bad}", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["teleport"]),
    (["policy-load", "--policy", "{good}", "--pid", "{pid}", "--pid", "{pid}",
      "--pin-dir", "{ppin}"], ["one --pid at a time"]),  # 17
    (["policy-load", "--policy", "{good}", "--pin-dir", "{ppin}"], ["needs a target"]),
    (["policy-load", "--policy", "no-such-builtin", "--pid", "{pid}", "--pin-dir", "{ppin}"],
     ["no built-in policy"]),
    (["policy-load", "--policy", "{good}", "--pid", "999999999", "--pin-dir", "{ppin}"],
     ["no such process"]),
    (["policy-load", "--pid", "{pid}", "--pin-dir", "{ppin}"], ["--policy"]),
    # policy-summary
    (["policy-summary", "--pin-dir", "{ppin}"], ["{ppin}"]),
    (["policy-summary", "--no-such-option"], ["No such option"]),
    # policy-unload
    (["policy-unload", "--pin-dir", "{file}"], ["{file}", "not a directory"]),  # 16 (and 1)
    (["policy-unload", "--pin-dir", "{dir}"], ["{dir}", "nothing was removed"]),
    (["policy-unload", "extra-argument"], ["unexpected extra argument"]),
    # containers, profiles, version
    (["containers", "--no-such-option"], ["No such option"]),
    (["containers", "extra-argument"], ["unexpected extra argument"]),
    (["profiles", "extra-argument"], ["unexpected extra argument"]),
    (["no-such-command"], ["No such command"]),
]


def _id(case: tuple[list[str], list[str]]) -> str:
    return " ".join(case[0]).replace("\n", "\\n").replace("\x1b", "\\e")[:60]


@pytest.mark.parametrize("argv,needles", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_one_line(argv: list[str], needles: list[str], places: dict[str, str]) -> None:
    args = [a.format(**places) for a in argv]
    watched = [Path(places[k]) for k in ("dir", "file", "fifo", "big", "bad", "good", "pin",
                                         "ppin")]
    before = _snapshot(watched)
    progs_before = our_prog_ids()

    proc = subprocess.run([SWATCH, *args], capture_output=True, timeout=30,
                          preexec_fn=_cap_memory)

    err = proc.stderr.decode("utf-8", "backslashreplace")
    assert proc.returncode != 0, (proc.returncode, err)
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("swatch: error: "), err
    for n in needles:
        assert n.format(**places) in err, (n, err)
    # `run` loads its own tracer and drops it when it exits; the kernel frees programs a
    # little after their last fd closes (RCU), so wait for that, not for a fixed time.
    assert wait_for(lambda: our_prog_ids() == progs_before), "a BPF program was left loaded"
    assert _snapshot(watched) == before, "a file, directory or pin dir given was changed"
    assert not Path(places["pin"]).exists() and not Path(places["ppin"]).exists()


def test_table_covers_every_command() -> None:
    commands = {argv[0] for argv, _ in CASES}
    assert commands >= {"load", "watch", "unload", "status", "run", "summary", "policy-load",
                        "policy-summary", "policy-unload", "containers", "profiles"}
    assert len(CASES) >= 40


# ------------------------------------------------------------------ item 16, beyond the table


def test_full_filesystem_one_line_and_whole_lines(tmp_path: Path, workload) -> None:  # type: ignore[no-untyped-def]
    """ENOSPC on a real (tiny tmpfs) filesystem: one line, and the file ends in a whole line."""
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "swatch-test-full", str(full)],
                   check=True)
    try:
        out = full / "events.jsonl"
        proc = subprocess.run([SWATCH, "run", "--json", "-o", str(out), "--",
                               workload("counts"), "5000", "1", "0"],
                              input=b"g", capture_output=True, timeout=60)
        err = proc.stderr.decode()
        # `run` keeps CMD running and exits with its code (the streams design on main); the
        # failure is one line, said once.
        assert "Traceback" not in err, err
        said = [line for line in err.splitlines() if "No space left on device" in line]
        assert len(said) == 1 and said[0].startswith("swatch: "), err
        data = out.read_bytes()
        assert len(data) > 4096, "the filesystem did not fill: the test proves nothing"
        assert data.endswith(b"\n"), data[-200:]
        for line in data.splitlines():
            json.loads(line)  # every line whole
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_summary_by_pid_total_row(pin_dir: Path, workload) -> None:  # type: ignore[no-untyped-def]
    """`summary --once --by pid` printed a TypeError on the TOTAL row (it has no pid)."""
    p = subprocess.Popen([workload("counts"), "7", "1", "0"], stdin=subprocess.PIPE)
    try:
        swatch("load", "--pid", str(p.pid), "--pin-dir", str(pin_dir), check=True)
        assert p.stdin is not None
        p.stdin.write(b"g")
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    finally:
        p.kill()
    proc = swatch("summary", "--once", "--by", "pid", "--pin-dir", str(pin_dir))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]
            if line and not line.startswith("-")}
    assert rows[str(p.pid)][1] == "counts"
    assert int(rows["TOTAL"][1].replace(",", "")) == int(rows[str(p.pid)][2].replace(",", ""))


def test_policy_file_name_not_utf8_loads(tmp_path: Path) -> None:
    """A policy path with byte 0xFF: a traceback (UnicodeEncodeError) when the name was pinned.
    A file name is any bytes; the policy's name shows the byte as \\xff."""
    pol = os.path.join(os.fsencode(tmp_path), b"pol\xff.policy")
    Path(os.fsdecode(pol)).write_text("block connect\n")
    sleeper = subprocess.Popen(["sleep", "300"])
    ppin = Path(f"/sys/fs/bpf/swatch-test-badp-{uuid.uuid4().hex[:10]}")
    try:
        proc = subprocess.run([os.fsencode(SWATCH), b"policy-load", b"--policy", pol, b"--pid",
                               str(sleeper.pid).encode(), b"--pin-dir", bytes(ppin)],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert b"policy pol\\xff on pid" in proc.stdout
        info = json.loads(swatch("policy-summary", "--json", "--pin-dir", str(ppin),
                                 check=True).stdout)
        assert info["policy"] == "pol\\xff"
    finally:
        swatch("policy-unload", "--pin-dir", str(ppin))
        sleeper.kill()
        sleeper.wait()
    assert not ppin.exists()
