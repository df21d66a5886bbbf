"""Pins: swatch deletes only what it pinned, counts a component loaded only when every link is
pinned, and refuses pinned maps of another build. Real kernel, real bpffs, real maps
(issue 8, items 1, 2, 8, 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import TEST_PIN_PREFIX, swatch, wait_for

HOLD = "SWATCH_TEST_HOLD_BEFORE_MARKER"


def one_line_error(r: subprocess.CompletedProcess) -> str:  # type: ignore[type-arg]
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swatch: error: "), r.stderr
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes | None]:
    """Every entry under d with its contents (None for directories)."""
    return {str(p.relative_to(d)): (None if p.is_dir() else p.read_bytes())
            for p in sorted(d.rglob("*"))}


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """An ordinary directory with a user's files, shaped like our layout to tempt a deleter."""
    d = tmp_path / "work"
    (d / "maps").mkdir(parents=True)
    (d / "links").mkdir()
    (d / "notes.txt").write_text("precious\n")
    (d / "maps" / "meta").write_text("not a BPF map\n")
    (d / "links" / "sys_enter").write_text("not a BPF link\n")
    (d / "src").mkdir()
    (d / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    return d


@pytest.fixture
def bpffs_dir():  # type: ignore[no-untyped-def]
    """A bpffs directory this test fills by hand; emptied afterwards (it is the test's own)."""
    d = Path(f"{TEST_PIN_PREFIX}{uuid.uuid4().hex[:10]}")
    d.mkdir()
    yield d
    if d.exists():
        for p in sorted(d.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        d.rmdir()


@pytest.fixture
def ppin():  # type: ignore[no-untyped-def]
    d = Path(f"{TEST_PIN_PREFIX}policy-{uuid.uuid4().hex[:10]}")
    yield d
    swatch("policy-unload", "--pin-dir", str(d))
    assert not d.exists(), f"{d} left behind"


@pytest.fixture
def sleeper():  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def bpftool_map(path: Path, kind: str, key: int, value: int, entries: int) -> None:
    """Pin a map of our own making (not swatch's) at path."""
    subprocess.run(["bpftool", "map", "create", str(path), "type", kind, "key", str(key),
                    "value", str(value), "entries", str(entries), "name", path.name[:15]],
                   check=True, capture_output=True)


def is_pinned(path: Path) -> bool:
    return subprocess.run(["bpftool", "map", "show", "pinned", str(path)],
                          capture_output=True).returncode == 0


# --------------------------------------------------------------------------- items 1, 2


@pytest.mark.parametrize("cmd", ["unload", "policy-unload"])
def test_unload_refuses_an_ordinary_directory(cmd: str, user_dir: Path) -> None:
    before = snapshot(user_dir)
    msg = one_line_error(swatch(cmd, "--pin-dir", str(user_dir)))
    assert "not on bpffs" in msg and "nothing was removed" in msg, msg
    assert snapshot(user_dir) == before


@pytest.mark.parametrize("cmd", ["status", "summary", "watch", "policy-summary"])
def test_status_of_an_ordinary_directory_does_not_suggest_unload(cmd: str,
                                                                user_dir: Path) -> None:
    args = [cmd, "--pin-dir", str(user_dir)]
    if cmd == "summary":
        args.append("--once")
    msg = one_line_error(swatch(*args)).replace(str(user_dir), "DIR")
    assert "not on bpffs" in msg and "unload" not in msg, msg
    assert (user_dir / "notes.txt").read_text() == "precious\n"


@pytest.mark.parametrize("cmd,how", [
    ("unload", "flag"), ("policy-unload", "flag"), ("status", "flag"),
    ("unload", "SWATCH_PIN_DIR"), ("status", "SWATCH_PIN_DIR"),
    ("policy-unload", "SWATCH_POLICY_PIN_DIR"), ("policy-summary", "SWATCH_POLICY_PIN_DIR"),
])
def test_empty_pin_dir_is_an_error_not_the_current_directory(cmd: str, how: str,
                                                             user_dir: Path) -> None:
    before = snapshot(user_dir)
    if how == "flag":
        r = swatch(cmd, "--pin-dir", "", cwd=user_dir)
    else:
        r = swatch(cmd, env={how: ""}, cwd=user_dir)
    msg = one_line_error(r)
    assert "empty" in msg, msg
    assert snapshot(user_dir) == before


@pytest.mark.parametrize("cmd", ["unload", "policy-unload", "status"])
def test_pin_dir_that_is_a_regular_file(cmd: str, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("data\n")
    msg = one_line_error(swatch(cmd, "--pin-dir", str(f)))
    assert "not a directory" in msg, msg
    assert f.read_text() == "data\n"


@pytest.mark.parametrize("cmd", ["unload", "policy-unload"])
def test_unload_refuses_bpffs_pins_that_are_not_ours(cmd: str, bpffs_dir: Path) -> None:
    # Pins of another tool: a map at the top, and our names next to one we do not know.
    (bpffs_dir / "maps").mkdir()
    bpftool_map(bpffs_dir / "theirs", "hash", 4, 4, 8)
    bpftool_map(bpffs_dir / "maps" / "meta", "array", 4, 16, 1)
    msg = one_line_error(swatch(cmd, "--pin-dir", str(bpffs_dir)))
    assert "theirs" in msg and "nothing was removed" in msg, msg
    assert is_pinned(bpffs_dir / "theirs") and is_pinned(bpffs_dir / "maps" / "meta")

    # Only our names, but one of them is a map where a link belongs.
    (bpffs_dir / "theirs").unlink()
    (bpffs_dir / "links").mkdir()
    link_name = "sys_enter" if cmd == "unload" else "swp_exit"
    bpftool_map(bpffs_dir / "links" / link_name, "array", 4, 4, 1)
    msg = one_line_error(swatch(cmd, "--pin-dir", str(bpffs_dir)))
    assert f"links/{link_name} is not a pinned BPF link" in msg, msg
    assert is_pinned(bpffs_dir / "links" / link_name)


def test_load_refuses_a_directory_not_on_bpffs(tmp_path: Path, sleeper) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "pins"
    msg = one_line_error(swatch("load", "--pid", str(sleeper.pid), "--pin-dir", str(d)))
    assert "not on bpffs" in msg, msg
    assert not d.exists()


def test_pins_of_the_first_layout_are_ours_and_removable(bpffs_dir: Path) -> None:
    # Layout 1: maps/ and links/ with our names, no marker directory.
    (bpffs_dir / "maps").mkdir()
    (bpffs_dir / "links").mkdir()
    bpftool_map(bpffs_dir / "maps" / "meta", "array", 4, 400, 1)
    bpftool_map(bpffs_dir / "maps" / "stats", "percpu_array", 4, 296, 512)
    msg = one_line_error(swatch("status", "--pin-dir", str(bpffs_dir)))
    assert "stale pins" in msg and "earlier swatch layout" in msg, msg
    assert f"swatch unload --pin-dir {bpffs_dir}" in msg
    r = swatch("unload", "--pin-dir", str(bpffs_dir), check=True)
    assert "unloaded" in r.stdout
    assert not bpffs_dir.exists()


# --------------------------------------------------------------------------- item 8


def kill_before_marker(args: list[str], tmp_path: Path) -> None:
    """Run a real load and SIGKILL it at the last moment before its completion marker: every
    map and link pinned, maps/meta not yet."""
    hold = tmp_path / "hold"
    proc = subprocess.Popen([*args], env={**os.environ, HOLD: str(hold)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: hold.exists() and hold.read_text().endswith("\n"), timeout=30), \
            "the load never reached the completion marker"
        assert int(hold.read_text()) == proc.pid
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_tracer_killed_before_the_marker_is_stale(pin_dir: Path, sleeper,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    from conftest import SWATCH

    kill_before_marker([SWATCH, "load", "--pid", str(sleeper.pid), "--pin-dir", str(pin_dir)],
                       tmp_path)
    assert (pin_dir / "links" / "sys_enter").exists()  # the links are pinned, attached
    assert not (pin_dir / "maps" / "meta").exists()
    for args in (["status"], ["summary", "--once"], ["watch", "--duration", "1"],
                 ["load", "--pid", str(sleeper.pid)]):
        msg = one_line_error(swatch(*args, "--pin-dir", str(pin_dir)))
        assert "stale pins" in msg and "completion marker" in msg, (args, msg)
        assert f"swatch unload --pin-dir {pin_dir}" in msg, msg
    r = swatch("unload", "--pin-dir", str(pin_dir), check=True)
    assert "unloaded" in r.stdout
    assert not pin_dir.exists()  # and the autouse fixture checks no program is left


def test_policy_killed_before_the_marker_is_stale(ppin: Path, sleeper,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    from conftest import SWATCH

    kill_before_marker([SWATCH, "policy-load", "--pid", str(sleeper.pid), "--policy",
                        "no-network", "--pin-dir", str(ppin)], tmp_path)
    assert (ppin / "links" / "swp_exit").exists() and (ppin / "links" / "swp_sys_enter").exists()
    for args in (["policy-summary"], ["policy-load", "--pid", str(sleeper.pid), "--policy",
                                      "no-network"]):
        msg = one_line_error(swatch(*args, "--pin-dir", str(ppin)))
        assert "stale policy pins" in msg and "completion marker" in msg, (args, msg)
        assert "already loaded" not in msg
        assert f"swatch policy-unload --pin-dir {ppin}" in msg, msg
    r = swatch("watch", "--duration", "1", "--policy-pin-dir", str(ppin),
               "--pin-dir", f"{TEST_PIN_PREFIX}none-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 1 and "stale policy pins" in r.stderr, r.stderr
    r = swatch("policy-unload", "--pin-dir", str(ppin), check=True)
    assert "policy unloaded" in r.stdout
    assert not ppin.exists()


def test_policy_missing_an_enforcing_link_is_stale(ppin: Path, sleeper) -> None:  # type: ignore[no-untyped-def]
    # The state issue 8 found after a kill -9: fork/exit tracking pinned, enforcing links not.
    swatch("policy-load", "--pid", str(sleeper.pid), "--policy", "no-network", "--pin-dir",
           str(ppin), check=True)
    for link in (ppin / "links").iterdir():
        if link.name not in ("swp_fork", "swp_exit"):
            link.unlink()
    msg = one_line_error(swatch("policy-summary", "--pin-dir", str(ppin)))
    assert "stale policy pins" in msg and "missing links/" in msg, msg
    msg = one_line_error(swatch("policy-load", "--pid", str(sleeper.pid), "--policy",
                                "no-network", "--pin-dir", str(ppin)))
    assert "stale policy pins" in msg and "already loaded" not in msg, msg
    swatch("policy-unload", "--pin-dir", str(ppin), check=True)
    assert not ppin.exists()


def test_link_names_cover_every_program() -> None:
    from syscall_watcher.policy import enforcer
    from syscall_watcher.trace import tracer
    from syscall_watcher.kernel.libbpf import BpfObject

    obj = BpfObject(enforcer.bpf_object_path())
    try:
        assert set(enforcer.LINK_NAMES) == set(obj.programs)
    finally:
        obj.close()
    assert len(enforcer.LINK_NAMES) == len(set(enforcer.LINK_NAMES)) <= 64
    assert set(tracer.TRACER.links) == set(tracer.PROGRAMS.values())


# --------------------------------------------------------------------------- item 14


def swap_map(path: Path, kind: str, key: int, value: int, entries: int) -> None:
    """Put a map of another shape where one of ours was pinned (as another version would)."""
    path.unlink()
    bpftool_map(path, kind, key, value, entries)


@pytest.mark.parametrize("name,kind,key,value,entries,what", [
    ("stats", "percpu_array", 4, 1024, 512, "value size 1024, expected 296"),
    ("meta", "array", 4, 1024, 1, "value size 1024, expected"),
    ("pid_filter", "hash", 8, 1, 16384, "key size 8, expected 4"),
    ("counters", "array", 4, 80, 1, "type array, expected percpu_array"),
])
def test_tracer_map_of_another_shape_is_one_line(pin_dir: Path, sleeper, name: str,  # type: ignore[no-untyped-def]
                                                 kind: str, key: int, value: int, entries: int,
                                                 what: str) -> None:
    swatch("load", "--pid", str(sleeper.pid), "--pin-dir", str(pin_dir), check=True)
    swap_map(pin_dir / "maps" / name, kind, key, value, entries)
    for args in (["status"], ["summary", "--once"], ["watch", "--duration", "1"]):
        msg = one_line_error(swatch(*args, "--pin-dir", str(pin_dir)))
        assert f"maps/{name}" in msg and what in msg, (args, msg)
        assert f"swatch unload --pin-dir {pin_dir}" in msg
    swatch("unload", "--pin-dir", str(pin_dir), check=True)
    assert not pin_dir.exists()


def test_policy_map_of_another_shape_is_one_line(ppin: Path, sleeper) -> None:  # type: ignore[no-untyped-def]
    swatch("policy-load", "--pid", str(sleeper.pid), "--policy", "no-network", "--pin-dir",
           str(ppin), check=True)
    swap_map(ppin / "maps" / "counts", "percpu_array", 4, 4096, 1)
    msg = one_line_error(swatch("policy-summary", "--pin-dir", str(ppin)))
    from syscall_watcher.kernel import libbpf
    want = libbpf.sizeof("struct swp_counts")
    assert "maps/counts" in msg and f"value size 4096, expected {want}" in msg, msg
    r = swatch("watch", "--duration", "1", "--policy-pin-dir", str(ppin),
               "--pin-dir", f"{TEST_PIN_PREFIX}none-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 1 and "maps/counts" in r.stderr and "Traceback" not in r.stderr
    swatch("policy-unload", "--pin-dir", str(ppin), check=True)
    assert not ppin.exists()
