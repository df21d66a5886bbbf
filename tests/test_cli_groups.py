"""Command groups: `swatch policy load|summary|unload` and the old flat spellings
(`policy-load` …) reach the same commands, with the same options, help, errors and completion;
`swatch --help` lists commands by section; a new group registers in one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import SWATCH, new_pin_dir, swatch
from typer.testing import CliRunner

from syscall_watcher.cli import app
from syscall_watcher.cli.groups import HyphenAliasedGroup, RootGroup

ROOT = Path(__file__).resolve().parent.parent
POLICY_COMMANDS = ("load", "summary", "unload", "phase")


def _help(*args: str) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], prog_name="swatch")
    assert res.exit_code == 0, (args, res.output)
    return res.output


def test_root_help_lists_sections_group_and_old_spellings() -> None:
    out = _help()
    sections = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert sections[sections.index("Options:") + 1:] == [
        "Trace:", "Targets:", "Sandbox:", "Serve:", "Detect:", "Policy:", "Audit:", "Other:",
        "Old spellings (still accepted):"]
    trace = out.split("Trace:\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[0] for line in trace.splitlines()] == [
        "load", "watch", "status", "summary", "unload", "run", "profiles"]
    policy = out.split("Policy:\n", 1)[1].split("\n\n", 1)[0]
    assert policy.split()[0] == "policy"
    old = out.split("Old spellings (still accepted):\n", 1)[1]
    assert [line.split()[0] for line in old.splitlines() if line.strip()] == [
        f"policy-{c}" for c in POLICY_COMMANDS]
    assert "policy-load     = swatch policy load" in old


def test_policy_help_lists_its_commands() -> None:
    out = _help("policy")
    assert out.startswith("Usage: swatch policy [OPTIONS] COMMAND [ARGS]...")
    listed = out.split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == list(
        POLICY_COMMANDS)


@pytest.mark.parametrize("command", POLICY_COMMANDS)
def test_group_and_old_spelling_are_one_command(command: str) -> None:
    """Same help text and options, only the usage line names the spelling typed."""
    grouped = _help("policy", command)
    flat = _help(f"policy-{command}")
    args = " {NAME}" if command == "phase" else ""
    assert grouped.splitlines()[0] == f"Usage: swatch policy {command} [OPTIONS]{args}"
    assert flat.splitlines()[0] == f"Usage: swatch policy-{command} [OPTIONS]{args}"
    assert grouped.splitlines()[1:] == flat.splitlines()[1:]
    assert "--pin-dir DIR" in grouped and "SWATCH_POLICY_PIN_DIR" in grouped


def test_bare_group_prints_its_help() -> None:
    """`swatch` and `swatch policy` alone print their help (exit 2, as click), not an error
    line holding the whole help with its newlines escaped."""
    for argv, usage in (([], "Usage: swatch [OPTIONS] COMMAND"),
                        (["policy"], "Usage: swatch policy [OPTIONS] COMMAND")):
        proc = swatch(*argv)
        assert proc.returncode == 2, proc
        assert proc.stderr.startswith(usage), proc.stderr
        assert "swatch: error" not in proc.stderr and "\\x0a" not in proc.stderr


@pytest.mark.parametrize("argv,needle", [
    (["policy", "nope"], "No such command 'nope'. (see `swatch policy --help`)"),
    (["policy-nope"], "No such command 'policy-nope'. Did you mean 'policy'?"),
    (["policy", "load", "--pid", "1"],
     "Missing option '--policy' / '-P'. (see `swatch policy load --help`)"),
    (["policy-load", "--pid", "1"],
     "Missing option '--policy' / '-P'. (see `swatch policy-load --help`)"),
    (["policy", "summary", "--no-such-option"], "No such option: --no-such-option"),
])
def test_usage_errors_are_one_line_and_name_the_spelling(argv: list[str], needle: str) -> None:
    proc = swatch(*argv)
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("swatch: error: "), proc
    assert needle in proc.stderr, proc.stderr


def _complete(words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    proc = subprocess.run([SWATCH], capture_output=True, text=True, cwd="/",
                          env={**os.environ, "_SWATCH_COMPLETE": "complete_bash",
                               "COMP_WORDS": words, "COMP_CWORD": str(cword)}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_completion_with_groups() -> None:
    top = _complete("swatch ")
    assert "policy" in top and "load" in top and "containers" in top
    assert not [w for w in top if w.startswith("policy-")]  # the group, not its old spellings
    assert _complete("swatch policy ") == list(POLICY_COMMANDS)
    assert _complete("swatch poli") == [f"policy-{c}" for c in POLICY_COMMANDS]
    assert _complete("swatch policy") == ["policy"] + [f"policy-{c}" for c in POLICY_COMMANDS]
    assert set(_complete("swatch policy load --pi")) == {"--pid", "--pin-dir"}
    assert set(_complete("swatch policy-load --pi")) == {"--pid", "--pin-dir"}


def test_man_page_has_the_group_and_the_old_spellings(tmp_path: Path) -> None:
    page = tmp_path / "swatch.1"
    subprocess.run([sys.executable, "tools/gen_manpage.py", str(page)], check=True, cwd=ROOT)
    rendered = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                              env={**os.environ, "MANWIDTH": "200"}, check=True).stdout
    for command in POLICY_COMMANDS:
        assert f"swatch policy {command}" in rendered
        assert f"swatch policy-{command}\n" in rendered
        assert f"the same as swatch policy {command}" in rendered
    # once under `policy load` (not again under its old spelling), once under `run`
    assert rendered.count("--require-preventive") == 2


def test_a_new_group_registers_in_one_line() -> None:
    """What a later group (detect, audit …) does: build its Typer, add it with one line."""
    root = typer.Typer(cls=RootGroup, rich_markup_mode=None)

    @root.command(rich_help_panel="Trace")
    def top() -> None:
        """A top-level command."""
        typer.echo("top ran")

    detect = typer.Typer(name="detect", cls=HyphenAliasedGroup, rich_markup_mode=None,
                         help="Detectors.")

    @detect.command("start")
    def start(rule: str = typer.Option("all", "--rule")) -> None:
        """Start detecting."""
        typer.echo(f"detect start {rule}")

    root.add_typer(detect, rich_help_panel="Detect")  # the one line
    runner = CliRunner()
    assert runner.invoke(root, ["detect", "start", "--rule", "x"]).output == "detect start x\n"
    assert runner.invoke(root, ["detect-start", "--rule", "y"]).output == "detect start y\n"
    out = runner.invoke(root, ["--help"], prog_name="swatch").output
    assert "Trace:\n  top" in out and "Detect:\n  detect" in out
    assert "detect-start  = swatch detect start" in out


# ------------------------------------------------------------------ against the real kernel


@pytest.fixture
def ppin():  # type: ignore[no-untyped-def]
    """A private policy pin dir, unloaded afterwards whatever happened."""
    d = new_pin_dir("policy")
    yield d
    swatch("policy", "unload", "--pin-dir", str(d))
    assert not d.exists(), f"{d} left behind"


def test_policy_group_load_summary_unload(ppin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`swatch policy load` enforces on a real process, `policy summary` and `policy-summary`
    count the same denial, `policy unload` removes it and `policy-unload` then finds none."""
    monkeypatch.setenv("SWATCH_POLICY_TIER", "cgroup")  # as tests/test_policy_enforce.py
    r, w = os.pipe()
    code = ("import socket, sys\nsys.stdin.readline()\n"
            "try:\n    socket.socket()\nexcept OSError as e:\n    sys.exit(e.errno)\n")
    target = subprocess.Popen([sys.executable, "-B", "-c", code], stdin=r)
    os.close(r)
    try:
        loaded = swatch("policy", "load", "--pid", str(target.pid), "--policy", "no-network",
                        "--pin-dir", str(ppin))
        assert loaded.returncode == 0, loaded.stderr
        assert f"swatch: policy no-network on pid {target.pid}" in loaded.stdout
        assert "socket: blocked before for IPv4/IPv6 (cgroup sock_create)" in loaded.stdout
        assert "`swatch policy summary` counts them" in loaded.stdout
        again = swatch("policy", "load", "--pid", str(target.pid), "--policy", "no-network",
                       "--pin-dir", str(ppin))
        assert again.returncode == 1 and "already loaded" in again.stderr, again
        os.write(w, b"go\n")
        assert target.wait(timeout=20) == errno.EPERM
    finally:
        os.close(w)
        if target.poll() is None:
            target.kill()
            target.wait()
    grouped = swatch("policy", "summary", "--json", "--pin-dir", str(ppin), check=True)
    flat = swatch("policy-summary", "--json", "--pin-dir", str(ppin), check=True)
    info = json.loads(grouped.stdout)
    assert info["denials"]["socket"] == 1 and info["total"] == 1, info
    assert json.loads(flat.stdout) == info
    human = swatch("policy", "summary", "--pin-dir", str(ppin), check=True).stdout
    assert "policy no-network" in human
    gone = swatch("policy", "unload", "--pin-dir", str(ppin), check=True)
    assert gone.stdout == f"swatch: policy unloaded (removed {ppin})\n"
    assert not ppin.exists()
    twice = swatch("policy-unload", "--pin-dir", str(ppin), check=True)
    assert twice.stdout == f"swatch: no policy loaded at {ppin}\n"
