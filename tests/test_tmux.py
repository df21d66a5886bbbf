"""swatch in a real terminal: a tmux session of 90x24, as a person would run it.

Checks what only a terminal shows (issue 10's "done when"): an event is on screen within half a
second of happening (a liveness check with a wide margin over the 50 ms poll, not a speed
benchmark: before the fix nothing showed until 256 KiB had queued), colours only when the
output is the terminal, and `summary` redrawn in place inside the 90x24 screen, its columns
not moving between refreshes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import SWATCH, new_pin_dir, swatch, wait_for

COLS, ROWS = 90, 24
SGR = re.compile(r"\x1b\[[0-9;]*m")

# Waits for a line on stdin, then opens the file it names; again and again.
TARGET = """
import sys
for line in sys.stdin:
    with open(line.strip(), "w") as f:
        f.write("x")
    print("done", flush=True)
"""


class Tmux:
    """A tmux server of our own (its own socket), one 90x24 session, ended by the test."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]
        subprocess.run([*self.base, "new-session", "-d", "-s", "t", "-x", str(COLS),
                        "-y", str(ROWS), "-e", "NO_COLOR=", "bash", "--norc", "--noprofile"],
                       check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", text, "Enter"], check=True)

    def key(self, key: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", key], check=True)

    def screen(self, escapes: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", "t"] + (["-e"] if escapes else [])
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              check=True).stdout

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def term():  # type: ignore[no-untyped-def]
    assert shutil.which("tmux"), "tmux is installed by `make deps`"
    t = Tmux(f"swatch-test-{os.getpid()}")
    yield t
    t.close()


@pytest.fixture
def short_dir():  # type: ignore[no-untyped-def]
    """A directory with a short path, so a whole event line fits in 90 columns."""
    d = Path(tempfile.mkdtemp(prefix="sw", dir="/tmp"))
    yield d
    shutil.rmtree(d)


@pytest.fixture
def traced(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A target loaded into a private pin dir; unloaded afterwards whatever happened."""
    proc = subprocess.Popen([sys.executable, "-c", TARGET], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    pin = new_pin_dir("tmux")
    try:
        swatch("load", "--pid", str(proc.pid), "--pin-dir", str(pin), check=True)
        yield proc, pin
    finally:
        swatch("unload", "--pin-dir", str(pin))
        proc.kill()
        proc.wait()


def _touch(proc: subprocess.Popen[str], path: Path) -> float:
    """Make the target open path; returns the monotonic time just before it did."""
    assert proc.stdin is not None and proc.stdout is not None
    t0 = time.monotonic()
    proc.stdin.write(f"{path}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    return t0


def _watching(pin: Path) -> bool:
    st = json.loads(swatch("status", "--json", "--pin-dir", str(pin), check=True).stdout)
    return st["watching"] is not None


def _screen_if(term: Tmux, cond) -> str | None:  # type: ignore[no-untyped-def]
    screen = term.screen()
    return screen if cond(screen) else None


def _line_with(screen: str, needle: str) -> str | None:
    return next((ln for ln in screen.splitlines() if needle in ln), None)


def test_watch_is_live_and_coloured_only_on_the_terminal(term: Tmux, traced,  # type: ignore[no-untyped-def]
                                                          short_dir: Path) -> None:
    proc, pin = traced
    term.type(f"{SWATCH} watch --pin-dir {pin}")
    assert wait_for(lambda: _watching(pin), timeout=10), term.screen()

    marker = short_dir / "m1"
    t0 = _touch(proc, marker)
    shown = wait_for(lambda: _line_with(term.screen(), str(marker)), timeout=5, interval=0.01)
    elapsed = time.monotonic() - t0
    assert shown and "OPEN" in shown, term.screen()
    assert elapsed < 0.5, f"the event took {elapsed:.2f}s to reach the terminal"
    coloured = _line_with(term.screen(escapes=True), str(marker))
    assert coloured is not None and SGR.search(coloured), repr(coloured)  # a tty: colours
    assert all(len(ln) <= COLS for ln in term.screen().splitlines())

    term.key("C-c")
    assert wait_for(lambda: not _watching(pin), timeout=10), term.screen()

    # The same watch into a pipe: the output is not the terminal, so no colour codes.
    term.type(f"clear; {SWATCH} watch --pin-dir {pin} | cat")
    assert wait_for(lambda: _watching(pin), timeout=10), term.screen()
    marker2 = short_dir / "m2"
    _touch(proc, marker2)
    assert wait_for(lambda: _line_with(term.screen(), str(marker2)), timeout=5), term.screen()
    plain = _line_with(term.screen(escapes=True), str(marker2))
    assert plain is not None and not SGR.search(plain), repr(plain)
    term.key("C-c")
    assert wait_for(lambda: not _watching(pin), timeout=10), term.screen()


def test_summary_redraws_in_place_inside_90x24(term: Tmux, traced,  # type: ignore[no-untyped-def]
                                               tmp_path: Path) -> None:
    proc, pin = traced
    for i in range(3):  # something to count
        _touch(proc, tmp_path / f"count-{i}")
    term.type(f"clear; {SWATCH} summary --interval 0.3 --pin-dir {pin}")
    title = "=== swatch"
    first = wait_for(lambda: _screen_if(term, lambda s: title in s), timeout=10)
    assert first, term.screen()

    def total(screen: str) -> int | None:
        ln = _line_with(screen, "TOTAL")
        return int(ln.split()[1].replace(",", "")) if ln else None

    before = total(first)
    assert before, first
    for i in range(5):  # more syscalls, so the next refreshes show other numbers
        _touch(proc, tmp_path / f"more-{i}")
    later = wait_for(lambda: _screen_if(term, lambda s: (total(s) or 0) > before), timeout=10)
    assert later, term.screen()
    for screen in (first, later):
        lines = screen.rstrip("\n").splitlines()
        assert len(lines) <= ROWS
        assert all(len(ln) <= COLS for ln in lines), max(lines, key=len)
        # redrawn in place: one title, at the top, never a second table scrolled below it
        assert screen.count(title) == 1 and lines[0].startswith(title), screen
    # columns do not move between refreshes: the header line is the same
    header = [ln for ln in first.splitlines() if ln.startswith("SYSCALL")]
    assert header and header == [ln for ln in later.splitlines() if ln.startswith("SYSCALL")]
    term.key("C-c")
